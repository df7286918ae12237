package pgstore

import "github.com/orkstate/orkstate/internal/schemaname"

// MaxSchemaNameLen is the longest install schema name (40): "<schema>_schema_version",
// the longest name derived from it, must fit Postgres' 63 bytes.
const MaxSchemaNameLen = schemaname.MaxLen

// ValidateSchemaName is the one rule for install schema names, used by Migrate,
// New, the CLI (--schema and ORK_SCHEMA), notify and the triggerer, and repeated by
// tern.conf and the function package for the tern path. A name is valid when it is
//
//   - lower-case letters, digits and underscores, not starting with a digit, so
//     Postgres reads it unquoted as itself ("AudU" would become "audu" in DDL but
//     stay "AudU" in NOTIFY channel names);
//   - at most MaxSchemaNameLen (40) characters;
//   - not a Postgres keyword other than an unreserved one ("select", "user", "order");
//   - not starting with "pg_" (reserved for system schemas) and not "public" or
//     "information_schema" (schemas the install would share with others).
//
// Anything else is a *orkstate.ValidationError naming the field "schema", returned
// before anything is created.
func ValidateSchemaName(name string) error { return schemaname.Validate("schema", name) }
