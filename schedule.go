package orkstate

import (
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// cronParser accepts Ork's 5-field expressions and the 6-field form with seconds
// first, plus descriptors such as @hourly. The original parsed only 6 fields while
// storing 5, so its schedules never fired.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule validates a cron expression.
func ParseSchedule(expr string) (cron.Schedule, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, Invalid("schedule", expr, "empty cron expression")
	}
	s, err := cronParser.Parse(expr)
	if err != nil {
		return nil, Invalid("schedule", expr, err.Error())
	}
	return s, nil
}

// NextFireTime is the first fire time of expr strictly after after.
func NextFireTime(expr string, after time.Time) (time.Time, error) {
	s, err := ParseSchedule(expr)
	if err != nil {
		return time.Time{}, err
	}
	next := s.Next(after)
	if next.IsZero() {
		return time.Time{}, Invalid("schedule", expr, "never fires")
	}
	return next, nil
}
