package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/notify"
)

// waiter returns a function that sleeps until something may have changed: on
// PostgreSQL a NOTIFY (tasks became ready, runs finished) or the poll interval;
// on SQLite, where another process's changes are not announced, the interval.
// Notifications are only hints, so the poll runs either way.
func (a *app) waiter(ctx context.Context, be *backend) (func(context.Context) error, func(), error) {
	if be.pg != nil {
		l, err := notify.NewListener(be.pool, &notify.ListenerConfig{Schema: be.pg.Schema(), ApplicationName: "orkstate_cli"})
		if err != nil {
			return nil, nil, err
		}
		if err := l.Start(ctx); err != nil {
			return nil, nil, fmt.Errorf("listen: %w", err)
		}
		w, err := notify.NewWaker(l, &notify.WakerConfig{PollInterval: a.pollInterval, Debounce: 50 * time.Millisecond,
			Kinds: []orkstate.WakeKind{orkstate.WakeKindTasksReady, orkstate.WakeKindRunFinished, orkstate.WakeKindDeferredJobs}})
		if err != nil {
			l.Stop()
			return nil, nil, err
		}
		wait := func(ctx context.Context) error { _, err := w.Wait(ctx); return err }
		return wait, func() { w.Close(); l.Stop() }, nil
	}
	t := time.NewTicker(a.pollInterval)
	wait := func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	return wait, t.Stop, nil
}

// watchRun prints the run each time it changes until it is finished: redrawn in
// place on a terminal, one table after another when piped, one JSON line per
// change with --json.
func (a *app) watchRun(ctx context.Context, be *backend, id int64) error {
	wait, stop, err := a.waiter(ctx, be)
	if err != nil {
		return err
	}
	defer stop()
	var last []byte
	for {
		v, err := loadRun(ctx, be.store, id, a.now())
		if err != nil {
			return err
		}
		var b bytes.Buffer
		if a.json {
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			err = enc.Encode(v.json())
		} else {
			err = v.print(&b)
		}
		if err != nil {
			return err
		}
		if !bytes.Equal(b.Bytes(), last) {
			last = b.Bytes()
			switch {
			case a.json:
			case a.outTerminal:
				io.WriteString(a.stdout, "\x1b[H\x1b[2J") // home, clear screen
			default:
				if last != nil {
					fmt.Fprintln(a.stdout)
				}
			}
			if _, err := a.stdout.Write(b.Bytes()); err != nil {
				return err
			}
		}
		if v.run.Status.IsTerminal() {
			if v.run.Status != orkstate.RunSuccess {
				return runEndedError{id: id, status: v.run.Status}
			}
			return nil
		}
		if err := wait(ctx); err != nil {
			return err
		}
	}
}

// followLog prints a task's log as it grows, until the task is finished.
func (a *app) followLog(ctx context.Context, st orkstate.Store, id int64) error {
	printed := 0
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	for {
		// Status first: a log read after seeing the task finished is complete.
		t, err := st.GetTask(ctx, id)
		if err != nil {
			return notFound(err, "task", id)
		}
		text, err := st.TaskLog(ctx, id)
		if err != nil {
			return err
		}
		if len(text) > printed {
			chunk := text[printed:]
			printed = len(text)
			if a.json {
				err = enc.Encode(map[string]any{"task_id": id, "chunk": chunk})
			} else {
				_, err = io.WriteString(a.stdout, chunk)
			}
			if err != nil {
				return err
			}
		}
		if t.Status.IsTerminal() {
			if a.json {
				return enc.Encode(map[string]any{"task_id": id, "status": t.Status})
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(a.pollInterval):
		}
	}
}
