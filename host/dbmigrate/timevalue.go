package dbmigrate

import (
	"fmt"
	"time"
)

// TimeValue scans a timestamp column in either dialect: a time.Time from
// PostgreSQL, or one of the text forms SQLite gives back; always as UTC.
type TimeValue time.Time

// timeLayouts are the text forms a timestamp may come back as.
var timeLayouts = []string{
	"2006-01-02 15:04:05.000000+00:00", "2006-01-02 15:04:05.999999999-07:00", time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05",
}

// Scan implements sql.Scanner.
func (t *TimeValue) Scan(v any) error {
	switch x := v.(type) {
	case time.Time:
		*t = TimeValue(x.UTC())
		return nil
	case []byte:
		return t.Scan(string(x))
	case string:
		for _, layout := range timeLayouts {
			if p, err := time.Parse(layout, x); err == nil {
				*t = TimeValue(p.UTC())
				return nil
			}
		}
		return fmt.Errorf("%q is not a timestamp", x)
	}
	return fmt.Errorf("cannot scan %T as a timestamp", v)
}
