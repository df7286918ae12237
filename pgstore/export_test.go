package pgstore

import "github.com/orkstate/orkstate/internal/schemaname"

// InstallFunctions lets tests install another version of the function package.
var InstallFunctions = installFunctions

// SchemaKeywords is the keyword list ValidateSchemaName refuses.
var SchemaKeywords = schemaname.Keywords
