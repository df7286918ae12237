package storetest

import (
	"strings"
	"testing"

	"github.com/orkstate/orkstate"
)

func (s *suite) testLogs(t *testing.T) {
	s.test(t, "AppendInOrder", func(t *testing.T, b *bundle) {
		_, ts := b.legacyRun(2)
		a, other := ts[0].ID, ts[1].ID
		log, err := b.store.TaskLog(b.ctx, a)
		noErr(t, "TaskLog of a task without log", err)
		equal(t, "empty log", log, "")
		chunks := []string{"line 1\n", "it's 100% \"quoted\" \\ ünïcødé\n", "", "tail"}
		for _, c := range chunks {
			noErr(t, "AppendTaskLog", b.store.AppendTaskLog(b.ctx, a, c))
		}
		noErr(t, "AppendTaskLog other", b.store.AppendTaskLog(b.ctx, other, "other task"))
		log, err = b.store.TaskLog(b.ctx, a)
		noErr(t, "TaskLog", err)
		equal(t, "log", log, strings.Join(chunks, ""))
		log, err = b.store.TaskLog(b.ctx, other)
		noErr(t, "TaskLog other", err)
		equal(t, "other log", log, "other task")
	})

	s.test(t, "Cap", func(t *testing.T, b *bundle) {
		_, ts := b.legacyRun(2)
		a, big := ts[0].ID, ts[1].ID
		head := strings.Repeat("x", orkstate.MaxTaskLogBytes-10)
		noErr(t, "append up to 10 bytes below the cap", b.store.AppendTaskLog(b.ctx, a, head))
		isValidation(t, "append past the cap", b.store.AppendTaskLog(b.ctx, a, strings.Repeat("y", 11)))
		log, err := b.store.TaskLog(b.ctx, a)
		noErr(t, "TaskLog", err)
		equal(t, "nothing appended by the refused call", len(log), orkstate.MaxTaskLogBytes-10)
		noErr(t, "append exactly to the cap", b.store.AppendTaskLog(b.ctx, a, strings.Repeat("z", 10)))
		log, err = b.store.TaskLog(b.ctx, a)
		noErr(t, "TaskLog", err)
		equal(t, "log at the cap", len(log), orkstate.MaxTaskLogBytes)
		equal(t, "ends with the last chunk", log[len(log)-10:], strings.Repeat("z", 10))
		isValidation(t, "one more byte", b.store.AppendTaskLog(b.ctx, a, "!"))

		isValidation(t, "one chunk above the cap", b.store.AppendTaskLog(b.ctx, big, strings.Repeat("b", orkstate.MaxTaskLogBytes+1)))
		log, err = b.store.TaskLog(b.ctx, big)
		noErr(t, "TaskLog", err)
		equal(t, "nothing stored", log, "")
	})
}
