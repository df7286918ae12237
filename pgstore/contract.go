package pgstore

import "github.com/orkstate/orkstate"

var (
	_ orkstate.Store       = (*Store)(nil)
	_ orkstate.RunImporter = (*Store)(nil)
)
