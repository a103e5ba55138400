package mapping_test

import (
	"testing"
	"time"

	"github.com/woorelay/woorelay/mapping"
)

func ms(year int, month time.Month, day, hour, min, sec, nsec int, loc *time.Location) int64 {
	return time.Date(year, month, day, hour, min, sec, nsec, loc).UnixMilli()
}

func TestEpochMillis(t *testing.T) {
	ist := time.FixedZone("IST", 5*3600+30*60)
	pst := time.FixedZone("PST", -8*3600)
	str := func(s string) mapping.Value { return mapping.Value{Kind: mapping.String, Text: s} }
	num := func(s string) mapping.Value { return mapping.Value{Kind: mapping.Number, Text: s} }
	base := ms(2024, 3, 15, 10, 20, 30, 0, time.UTC)
	tests := []struct {
		name string
		in   mapping.Value
		want int64
	}{
		{"iso Z", str("2024-03-15T10:20:30Z"), base},
		{"iso lower z", str("2024-03-15t10:20:30z"), base},
		{"iso +05:30", str("2024-03-15T15:50:30+05:30"), ms(2024, 3, 15, 15, 50, 30, 0, ist)},
		{"iso +05:30 equals utc", str("2024-03-15T15:50:30+05:30"), base},
		{"iso -0800", str("2024-03-15T02:20:30-0800"), ms(2024, 3, 15, 2, 20, 30, 0, pst)},
		{"iso -0800 equals utc", str("2024-03-15T02:20:30-0800"), base},
		{"iso -08", str("2024-03-15T02:20:30-08"), base},
		{"iso +00:00", str("2024-03-15T10:20:30+00:00"), base},
		{"fraction 1 digit", str("2024-03-15T10:20:30.5Z"), base + 500},
		{"fraction 3 digits", str("2024-03-15T10:20:30.123Z"), base + 123},
		{"fraction 6 digits", str("2024-03-15T10:20:30.123456Z"), base + 123},
		{"fraction 9 digits", str("2024-03-15T10:20:30.999999999Z"), base + 999},
		{"fraction with offset", str("2024-03-15T15:50:30.250+05:30"), base + 250},
		{"fraction comma", str("2024-03-15T10:20:30,5Z"), base + 500},
		{"zone-less is utc", str("2024-03-15T10:20:30"), base},
		{"zone-less fraction", str("2024-03-15T10:20:30.007"), base + 7},
		{"no seconds", str("2024-03-15T10:20Z"), base - 30000},
		{"date only", str("2024-03-15"), ms(2024, 3, 15, 0, 0, 0, 0, time.UTC)},
		{"space separator", str("2024-03-15 10:20:30"), base},
		{"space separator with zone", str("2024-03-15 10:20:30+00:00"), base},
		{"surrounding spaces", str("  2024-03-15T10:20:30Z "), base},
		{"leap day", str("2024-02-29T00:00:00Z"), ms(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{"before 1970", str("1969-12-31T23:59:59Z"), -1000},
		{"epoch", str("1970-01-01T00:00:00Z"), 0},
		{"epoch seconds", num("1710498030"), base},
		{"epoch ms", num("1710498030000"), base},
		{"epoch ms with millis", num("1710498030123"), base + 123},
		{"fractional epoch seconds", num("1710498030.5"), base + 500},
		{"fractional epoch seconds millis", num("1710498030.123"), base + 123},
		{"fractional epoch seconds truncated", num("1710498030.9999"), base + 999},
		{"epoch seconds exponent", num("1.71049803e9"), base},
		{"epoch seconds zero", num("0"), 0},
		{"numeric string seconds", str("1710498030"), base},
		{"numeric string ms", str("1710498030123"), base + 123},
		{"numeric string fractional seconds", str("1710498030.25"), base + 250},
		{"negative epoch seconds", num("-86400"), -86400000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mapping.EpochMillis(tc.in)
			if err != nil {
				t.Fatalf("EpochMillis(%s %q): %v", tc.in.Kind, tc.in.Text, err)
			}
			if got != tc.want {
				t.Errorf("EpochMillis(%s %q) = %d (%s), want %d (%s)", tc.in.Kind, tc.in.Text,
					got, time.UnixMilli(got).UTC().Format(time.RFC3339Nano), tc.want, time.UnixMilli(tc.want).UTC().Format(time.RFC3339Nano))
			}
		})
	}
}

func TestEpochMillisErrors(t *testing.T) {
	str := func(s string) mapping.Value { return mapping.Value{Kind: mapping.String, Text: s} }
	tests := []struct {
		name string
		in   mapping.Value
	}{
		{"garbage", str("yesterday")},
		{"month 13", str("2024-13-01T00:00:00Z")},
		{"month 0", str("2024-00-10")},
		{"feb 30", str("2024-02-30")},
		{"feb 29 non-leap", str("2023-02-29T00:00:00Z")},
		{"day 32", str("2024-01-32")},
		{"hour 25", str("2024-01-01T25:00:00Z")},
		{"minute 60", str("2024-01-01T10:60:00Z")},
		{"empty", str("")},
		{"blank", str("   ")},
		{"bad zone", str("2024-01-01T00:00:00+5")},
		{"bad zone hours", str("2024-01-01T00:00:00+25:00")},
		{"trailing text", str("2024-01-01T00:00:00Z tomorrow")},
		{"bad separator", str("2024-01-01X00:00:00")},
		{"dot without digits", str("2024-01-01T00:00:00.Z")},
		{"slashes", str("2024/01/01")},
		{"bool", mapping.Value{Kind: mapping.Bool, Text: "true"}},
		{"null", mapping.Value{Kind: mapping.Null}},
		{"missing", mapping.Value{}},
		{"object", mapping.Value{Kind: mapping.Object, Text: `{"t":1}`}},
		{"array", mapping.Value{Kind: mapping.Array, Text: `[1]`}},
		{"huge number", mapping.Value{Kind: mapping.Number, Text: "1e300"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := mapping.EpochMillis(tc.in); err == nil {
				t.Errorf("EpochMillis(%s %q) = %d, want an error", tc.in.Kind, tc.in.Text, got)
			}
		})
	}
}
