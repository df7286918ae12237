// Package schemaname holds the one rule for orkstate install schema names, shared by
// pgstore (which documents it as pgstore.ValidateSchemaName) and notify (which must
// not import pgstore). tern.conf and sql/functions/install_package.sql repeat it.
package schemaname

import (
	"regexp"
	"slices"
	"strings"

	"github.com/orkstate/orkstate"
)

// MaxLen is the longest install schema name. The longest name derived from it, the
// version table's "<schema>_schema_version", must fit Postgres' 63 bytes, and so
// must "<schema>_api" and the "<schema>_deferred_jobs" channel.
const MaxLen = 40

// pattern: a lower-case identifier that Postgres reads unquoted as itself.
var pattern = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Keywords are Postgres' keywords that are not unreserved (pg_get_keywords() with
// catcode R, T or C) in versions 14 to 17: as a bare schema name they are a syntax
// error somewhere in the install. TestSchemaKeywordsCoverServer checks that the
// server's list is contained in this one; TestTernConf that tern.conf refuses each.
var Keywords = []string{
	"all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "authorization",
	"between", "bigint", "binary", "bit", "boolean", "both", "case", "cast", "char", "character",
	"check", "coalesce", "collate", "collation", "column", "concurrently", "constraint", "create",
	"cross", "current_catalog", "current_date", "current_role", "current_schema", "current_time",
	"current_timestamp", "current_user", "dec", "decimal", "default", "deferrable", "desc",
	"distinct", "do", "else", "end", "except", "exists", "extract", "false", "fetch", "float", "for",
	"foreign", "freeze", "from", "full", "grant", "greatest", "group", "grouping", "having", "ilike",
	"in", "initially", "inner", "inout", "int", "integer", "intersect", "interval", "into", "is",
	"isnull", "join", "json", "json_array", "json_arrayagg", "json_exists", "json_object",
	"json_objectagg", "json_query", "json_scalar", "json_serialize", "json_table", "json_value",
	"lateral", "leading", "least", "left", "like", "limit", "localtime", "localtimestamp",
	"merge_action", "national", "natural", "nchar", "none", "normalize", "not", "notnull", "null",
	"nullif", "numeric", "offset", "on", "only", "or", "order", "out", "outer", "overlaps", "overlay",
	"placing", "position", "precision", "primary", "real", "references", "returning", "right", "row",
	"select", "session_user", "setof", "similar", "smallint", "some", "substring", "symmetric",
	"system_user", "table", "tablesample", "then", "time", "timestamp", "to", "trailing", "treat",
	"trim", "true", "union", "unique", "user", "using", "values", "varchar", "variadic", "verbose",
	"when", "where", "window", "with", "xmlattributes", "xmlconcat", "xmlelement", "xmlexists",
	"xmlforest", "xmlnamespaces", "xmlparse", "xmlpi", "xmlroot", "xmlserialize", "xmltable",
}

// Validate returns a *orkstate.ValidationError naming field unless name is a valid
// install schema name (see pgstore.ValidateSchemaName for the rule).
func Validate(field, name string) error {
	reason := ""
	switch {
	case name == "":
		reason = "must not be empty"
	case len(name) > MaxLen:
		reason = "must be at most 40 characters"
	case !pattern.MatchString(name):
		reason = "must be lower-case letters, digits and underscores, not starting with a digit"
	case strings.HasPrefix(name, "pg_"):
		reason = "must not start with pg_ (reserved for system schemas)"
	case name == "public" || name == "information_schema":
		reason = "must not be a schema Postgres creates"
	case slices.Contains(Keywords, name):
		reason = "must not be a reserved SQL keyword"
	default:
		return nil
	}
	return orkstate.Invalid(field, name, reason)
}
