package destination

import (
	"testing"
	"time"
)

func TestBackoffGrowsToTheCapWithFullJitter(t *testing.T) {
	var lastN int64
	top := Backoff{Min: time.Second, Max: 5 * time.Minute, Rand: func(n int64) int64 { lastN = n; return n - 1 }}
	bottom := Backoff{Min: time.Second, Max: 5 * time.Minute, Rand: func(n int64) int64 { return 0 }}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300}
	for i, w := range want {
		w *= time.Second
		if got := top.Delay(i+1, 0); got != w {
			t.Errorf("failure %d: top of the jitter range %v, want %v", i+1, got, w)
		}
		if lastN != int64(w)+1 {
			t.Errorf("failure %d: rand drawn over [0,%d), want [0,%d]", i+1, lastN, w)
		}
		if got := bottom.Delay(i+1, 0); got != 0 {
			t.Errorf("failure %d: bottom of the jitter range %v, want 0", i+1, got)
		}
	}
	if got := top.Delay(1000, 0); got != 5*time.Minute {
		t.Errorf("after 1000 failures %v, want the 5m cap (no overflow)", got)
	}
	if got := top.Delay(0, 0); got != time.Second {
		t.Errorf("Delay(0) = %v, want Min", got)
	}
}

func TestBackoffDefaultsAndRealRandStayInBounds(t *testing.T) {
	var b Backoff
	for n := 1; n < 20; n++ {
		c := b.Ceiling(n)
		if c < time.Second || c > 5*time.Minute {
			t.Fatalf("Ceiling(%d) = %v outside the defaults", n, c)
		}
		for range 50 {
			if d := b.Delay(n, 0); d < 0 || d > c {
				t.Fatalf("Delay(%d) = %v outside [0,%v]", n, d, c)
			}
		}
	}
}

func TestBackoffRetryAfterTakesPrecedenceWhenLonger(t *testing.T) {
	top := Backoff{Min: time.Second, Max: time.Minute, Rand: func(n int64) int64 { return n - 1 }}
	for _, tc := range []struct {
		failures int
		ra, want time.Duration
	}{
		{1, 3 * time.Second, 3 * time.Second}, // ceiling 1s < RA
		{3, time.Second, 4 * time.Second},     // ceiling 4s > RA
		{1, time.Hour, 10 * time.Minute},      // RA capped
		{1, -time.Second, time.Second},        // nonsense ignored
	} {
		if got := top.Delay(tc.failures, tc.ra); got != tc.want {
			t.Errorf("Delay(%d, %v) = %v, want %v", tc.failures, tc.ra, got, tc.want)
		}
	}
	capped := Backoff{MaxRetryAfter: 2 * time.Second, Rand: func(int64) int64 { return 0 }}
	if got := capped.Delay(1, time.Minute); got != 2*time.Second {
		t.Errorf("MaxRetryAfter 2s: got %v", got)
	}
}
