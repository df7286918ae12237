package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// rootCommand builds the command tree. cobra gives --help with examples on every
// command, flag parsing with usage errors, and `orkstate completion bash|zsh|fish|powershell`.
func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "orkstate",
		Short: "Operate an orkstate store: workflows, runs, tasks, schedules, state files",
		Long: `orkstate looks at and acts on an orkstate store, on PostgreSQL or a SQLite file.

The store is --db: a postgres:// URL (the install schema is --schema, else
ORK_SCHEMA, else ork) or the path of a SQLite file. Without --db it is
DATABASE_URL, else ` + defaultURL + `.

Output is a table for people; --json gives stable JSON for scripts (docs/cli.md).
Exit codes: 0 ok, 1 internal error, 2 usage, 3 not found, 4 invalid input,
5 conflict (the state forbids it), 6 a watched run ended without success.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Example: `  orkstate runs --status failed --limit 20
  orkstate run 42 --watch
  orkstate retry 1234
  orkstate --db ork.db export --out state.json
  orkstate copy --from ork.db --to postgres://admin@db.example/app`,
	}
	root.PersistentFlags().StringVar(&a.db, "db", "", "the store: postgres://… or a SQLite file (default $DATABASE_URL)")
	root.PersistentFlags().StringVar(&a.schema, "schema", a.defaultSchema(), "PostgreSQL install schema; defaults to $ORK_SCHEMA when set")
	root.PersistentFlags().BoolVar(&a.json, "json", false, "print JSON for scripts instead of tables")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddGroup(&cobra.Group{ID: "look", Title: "Looking:"}, &cobra.Group{ID: "act", Title: "Acting:"},
		&cobra.Group{ID: "state", Title: "State files and copies:"}, &cobra.Group{ID: "admin", Title: "Install and try out:"})
	for _, c := range []*cobra.Command{a.workflowsCommand(), a.runsCommand(), a.runCommand(), a.taskCommand()} {
		c.GroupID = "look"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.triggerCommand(), a.runActionCommand("cancel"), a.runActionCommand("pause"),
		a.runActionCommand("resume"), a.retryCommand(), a.scheduleCommand(), a.limitsCommand(), a.keysCommand()} {
		c.GroupID = "act"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.exportCommand(), a.importCommand(), a.copyCommand()} {
		c.GroupID = "state"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.migrateCommand(), a.statusCommand(), a.purgeCommand(), a.demoCommand(), a.benchCommand()} {
		c.GroupID = "admin"
		root.AddCommand(c)
	}
	return root
}

// workflowNames completes a workflow name from the store of --db.
func (a *app) workflowNames(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	be, err := a.openDB(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	defer be.close()
	wfs, err := be.store.ListWorkflows(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	names := make([]string, len(wfs))
	for i, w := range wfs {
		names[i] = fmt.Sprintf("%s\t%s", w.Name, w.Description)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
