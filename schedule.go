package orkstate

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// cronParser accepts Ork's 5-field expressions and the 6-field form with seconds
// first, plus descriptors such as @hourly. The original parsed only 6 fields while
// storing 5, so its schedules never fired.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule validates a cron expression: at most MaxScheduleLength characters,
// and no fires closer than MinScheduleInterval — a seconds field (the 6-field form)
// must be one number, and @every at least a minute.
func ParseSchedule(expr string) (cron.Schedule, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, Invalid("schedule", expr, "empty cron expression")
	}
	if err := ValidText("schedule", expr); err != nil {
		return nil, err
	}
	if len(expr) > MaxScheduleLength {
		return nil, Invalid("schedule", abbreviate(expr), fmt.Sprintf("longer than %d characters", MaxScheduleLength))
	}
	s, err := cronParser.Parse(expr)
	if err != nil {
		return nil, Invalid("schedule", expr, err.Error())
	}
	if err := checkScheduleInterval(expr); err != nil {
		return nil, err
	}
	return s, nil
}

// oneSecond matches a seconds field that fires once a minute.
var oneSecond = regexp.MustCompile(`^[0-9]{1,2}$`)

// checkScheduleInterval refuses expressions that fire more often than
// MinScheduleInterval. Five fields fire at most once a minute; six fire once per
// value of the seconds field in each matching minute, so it must be one value.
func checkScheduleInterval(expr string) error {
	fields := strings.Fields(expr)
	if len(fields) > 0 && (strings.HasPrefix(fields[0], "TZ=") || strings.HasPrefix(fields[0], "CRON_TZ=")) {
		fields = fields[1:]
	}
	if len(fields) == 0 {
		return nil
	}
	if fields[0] == "@every" && len(fields) == 2 {
		d, err := time.ParseDuration(fields[1])
		if err != nil || d < MinScheduleInterval {
			return Invalid("schedule", expr, fmt.Sprintf("@every must be at least %s", MinScheduleInterval))
		}
		return nil
	}
	if len(fields) == 6 && !oneSecond.MatchString(fields[0]) {
		return Invalid("schedule", expr, fmt.Sprintf("fires more often than every %s: the seconds field must be one number", MinScheduleInterval))
	}
	return nil
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
