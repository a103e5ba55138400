package corpus

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/tidwall/gjson"
)

func TestGenerateDeterministic(t *testing.T) {
	tests := []struct {
		name string
		seed int64
		n    int
	}{
		{"seed 1", 1, 2000},
		{"seed 42", 42, 500},
		{"negative seed", -7, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := Generate(tt.seed, tt.n), Generate(tt.seed, tt.n)
			if len(a) != tt.n || len(b) != tt.n {
				t.Fatalf("got %d and %d events, want %d", len(a), len(b), tt.n)
			}
			for i := range a {
				if !bytes.Equal(a[i], b[i]) {
					t.Fatalf("event %d differs between two calls:\n%s\n%s", i, a[i], b[i])
				}
			}
			prefix := Generate(tt.seed, tt.n/2)
			for i := range prefix {
				if !bytes.Equal(prefix[i], a[i]) {
					t.Fatalf("event %d of Generate(%d, %d) differs from Generate(%d, %d)", i, tt.seed, tt.n/2, tt.seed, tt.n)
				}
			}
		})
	}
}

func TestGenerateSeedsDiffer(t *testing.T) {
	a, b := Generate(1, 50), Generate(2, 50)
	same := 0
	for i := range a {
		if bytes.Equal(a[i], b[i]) {
			same++
		}
	}
	if same != 0 {
		t.Errorf("%d of 50 events are identical for seeds 1 and 2", same)
	}
}

func TestGenerateValidJSON(t *testing.T) {
	for i, ev := range Generate(1, 10000) {
		if !json.Valid(ev) || !gjson.ValidBytes(ev) {
			t.Fatalf("event %d is not valid JSON: %s", i, ev)
		}
		if ev[0] != '{' {
			t.Fatalf("event %d is not an object: %s", i, ev)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, ev); err != nil || !bytes.Equal(compact.Bytes(), ev) {
			t.Fatalf("event %d is not compact JSON: %s", i, ev)
		}
	}
}

func TestGenerateTypeMix(t *testing.T) {
	const n = 10000
	counts := map[string]int{}
	for _, ev := range Generate(1, n) {
		counts[gjson.GetBytes(ev, "type").Str]++
	}
	want := map[string]float64{"track": 60, "identify": 20, "page": 20}
	total := 0
	for typ, pct := range want {
		got := 100 * float64(counts[typ]) / n
		if got < pct-5 || got > pct+5 {
			t.Errorf("%s: %.1f%% of events, want %.0f%% ± 5", typ, got, pct)
		}
		total += counts[typ]
	}
	if total != n {
		t.Errorf("%d events have a type other than track, identify or page: %v", n-total, counts)
	}
}

func TestGenerateAverageSize(t *testing.T) {
	events := Generate(1, 10000)
	total := 0
	for _, ev := range events {
		total += len(ev)
	}
	avg := float64(total) / float64(len(events))
	if avg < 1000 || avg > 1400 {
		t.Errorf("average event size is %.0f bytes, want 1000–1400", avg)
	}
}

// TestGenerateShape checks that the features the corpus promises appear in sensible proportions.
func TestGenerateShape(t *testing.T) {
	const n = 10000
	events := Generate(1, n)
	tests := []struct {
		name     string
		matches  func(ev []byte) bool
		min, max float64 // percent of all events
	}{
		{"userId", func(ev []byte) bool { return gjson.GetBytes(ev, "userId").Exists() }, 65, 75},
		{"anonymousId", func(ev []byte) bool { return gjson.GetBytes(ev, "anonymousId").String() != "" }, 100, 100},
		{"messageId", func(ev []byte) bool { return gjson.GetBytes(ev, "messageId").String() != "" }, 100, 100},
		{"sentAt", func(ev []byte) bool { return gjson.GetBytes(ev, "sentAt").Exists() }, 100, 100},
		{"Woopra cookie", func(ev []byte) bool { return gjson.GetBytes(ev, "integrations.Woopra.cookie").Exists() }, 20, 40},
		{"woopra external id", func(ev []byte) bool {
			return gjson.GetBytes(ev, `context.externalIds.#(type=="woopra").id`).Exists()
		}, 10, 20},
		{"timestamp epoch ms", func(ev []byte) bool { return gjson.GetBytes(ev, "timestamp").Type == gjson.Number }, 3, 12},
		{"timestamp +05:30", func(ev []byte) bool {
			return bytes.HasSuffix([]byte(gjson.GetBytes(ev, "timestamp").Str), []byte("+05:30"))
		}, 6, 18},
		{"timestamp with Z", func(ev []byte) bool { return bytes.HasSuffix([]byte(gjson.GetBytes(ev, "timestamp").Str), []byte("Z")) }, 50, 80},
		{"mobile device", func(ev []byte) bool { return gjson.GetBytes(ev, "context.device.type").Exists() }, 10, 30},
		{"browser page context", func(ev []byte) bool { return gjson.GetBytes(ev, "context.page.url").Exists() }, 70, 90},
		{"campaign", func(ev []byte) bool { return gjson.GetBytes(ev, "context.campaign.name").Exists() }, 15, 35},
		{"password property", func(ev []byte) bool { return bytes.Contains(ev, []byte(`password`)) }, 2, 30},
		{"revenue", func(ev []byte) bool { return gjson.GetBytes(ev, "properties.revenue").Exists() }, 5, 30},
		{"nested property", func(ev []byte) bool { return gjson.GetBytes(ev, "properties.experiment.id").Exists() }, 30, 60},
		{"array property", func(ev []byte) bool { return gjson.GetBytes(ev, "properties.tags").IsArray() }, 20, 50},
		{"identify company", func(ev []byte) bool { return gjson.GetBytes(ev, "traits.company.name").Exists() }, 10, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := 0
			for _, ev := range events {
				if tt.matches(ev) {
					k++
				}
			}
			pct := 100 * float64(k) / n
			if pct < tt.min || pct > tt.max {
				t.Errorf("%.1f%% of events, want %.0f–%.0f%%", pct, tt.min, tt.max)
			}
		})
	}
}

func TestWriteMatchesGenerate(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, 3, 200); err != nil {
		t.Fatal(err)
	}
	want := bytes.Join(Generate(3, 200), []byte("\n"))
	want = append(want, '\n')
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("Write output differs from Generate joined by newlines")
	}
}
