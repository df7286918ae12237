package sqlitecompat

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/orkstate/orkstate"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered step with its up and down SQL.
type migration struct {
	Version int
	Name    string
	Up      string
	Down    string
}

// migrations reads migrations/NNN_name.up.sql and .down.sql, in version order.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	byVersion := map[int]*migration{}
	for _, e := range entries {
		name := e.Name()
		var up bool
		var base string
		switch {
		case strings.HasSuffix(name, ".up.sql"):
			up, base = true, strings.TrimSuffix(name, ".up.sql")
		case strings.HasSuffix(name, ".down.sql"):
			base = strings.TrimSuffix(name, ".down.sql")
		default:
			continue
		}
		num, label, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("sqlitecompat: bad migration file name %q", name)
		}
		body, err := fs.ReadFile(migrationFS, "migrations/"+name)
		if err != nil {
			return nil, err
		}
		m := byVersion[v]
		if m == nil {
			m = &migration{Version: v, Name: label}
			byVersion[v] = m
		}
		if up {
			m.Up = string(body)
		} else {
			m.Down = string(body)
		}
	}
	out := make([]migration, 0, len(byVersion))
	for _, m := range byVersion {
		if m.Up == "" || m.Down == "" {
			return nil, fmt.Errorf("sqlitecompat: migration %d lacks its up or down part", m.Version)
		}
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("sqlitecompat: migration %d missing", i+1)
		}
	}
	return out, nil
}

// LatestVersion is the newest schema version this package ships.
func LatestVersion() int {
	ms, err := migrations()
	if err != nil {
		return 0
	}
	return len(ms)
}

// Migrate upgrades the schema to LatestVersion. Each step runs in its own
// BEGIN IMMEDIATE transaction with its version row, so two processes migrating
// at once are safe and a failed step leaves the previous version in place.
func (s *Store) Migrate(ctx context.Context) error {
	return s.MigrateTo(ctx, LatestVersion())
}

// MigrateTo moves the schema up or down to version; MigrateTo(ctx, 0) removes every
// table this package created (the version table stays, at version 0).
func (s *Store) MigrateTo(ctx context.Context, version int) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	if version < 0 || version > len(ms) {
		return orkstate.Invalid("version", version, fmt.Sprintf("must be between 0 and %d", len(ms)))
	}
	for {
		done := false
		err := s.write(ctx, func(t *txState) error {
			if _, err := t.exec(`CREATE TABLE IF NOT EXISTS orkstate_schema_version (
				singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
				version INTEGER NOT NULL)`); err != nil {
				return err
			}
			if _, err := t.exec(`INSERT OR IGNORE INTO orkstate_schema_version VALUES (1, 0)`); err != nil {
				return err
			}
			var cur int
			if err := t.queryRow(`SELECT version FROM orkstate_schema_version`).Scan(&cur); err != nil {
				return err
			}
			if cur > len(ms) {
				return fmt.Errorf("sqlitecompat: database schema version %d is newer than this build's %d", cur, len(ms))
			}
			var body string
			var next int
			switch {
			case cur == version:
				done = true
				return nil
			case cur < version:
				body, next = ms[cur].Up, cur+1
			default:
				body, next = ms[cur-1].Down, cur-1
			}
			if _, err := t.exec(body); err != nil {
				return fmt.Errorf("sqlitecompat: migration %d (%s) to version %d: %w", max(cur, next), ms[max(cur, next)-1].Name, next, err)
			}
			_, err := t.exec(`UPDATE orkstate_schema_version SET version = ?`, next)
			return err
		})
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// SchemaVersion is the database's current schema version (0 when not installed).
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.rdb.QueryRowContext(ctx, `SELECT version FROM orkstate_schema_version`).Scan(&v)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return 0, nil
		}
		return 0, err
	}
	return v, nil
}
