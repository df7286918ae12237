// Package orksql embeds orkstate's SQL: the tern migrations of the schema and the
// tern code package of functions. Both are text/templates over tern's [data]
// variables; {{.schema}} names the install schema. The code package's install.sql
// decides itself whether anything changes (see its header), so pgstore.Migrate and
// tern code install, which both render it, behave the same.
package orksql

import (
	"embed"
	"io/fs"
)

//go:embed schema/*.sql
var schemaFiles embed.FS

//go:embed functions/*.sql
var functionFiles embed.FS

// Schema is the tern migrations directory (sql/schema).
func Schema() fs.FS { return mustSub(schemaFiles, "schema") }

// Functions is the tern code package directory (sql/functions).
func Functions() fs.FS { return mustSub(functionFiles, "functions") }

func mustSub(f embed.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // the directory is embedded above; this cannot fail
	}
	return sub
}
