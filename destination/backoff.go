package destination

import (
	"math/rand/v2"
	"time"
)

// Backoff computes how long a failed event waits before its next attempt: exponential from
// Min to Max with full jitter, or the destination's Retry-After when that is longer. The zero
// value gives the defaults; a Backoff is safe for concurrent use when Rand is.
type Backoff struct {
	Min           time.Duration // ceiling after the first failure (default 1 s)
	Max           time.Duration // largest ceiling (default 5 min)
	MaxRetryAfter time.Duration // Retry-After values are capped to this (default 10 min)
	// Rand returns a number in [0, n); nil uses math/rand/v2. It must be safe for concurrent
	// use. Tests fix it to make delays predictable.
	Rand func(n int64) int64
}

func (b Backoff) withDefaults() Backoff {
	if b.Min <= 0 {
		b.Min = time.Second
	}
	if b.Max <= 0 {
		b.Max = 5 * time.Minute
	}
	if b.Max < b.Min {
		b.Max = b.Min
	}
	if b.MaxRetryAfter <= 0 {
		b.MaxRetryAfter = 10 * time.Minute
	}
	if b.Rand == nil {
		b.Rand = rand.Int64N
	}
	return b
}

// Ceiling is the largest delay after the given number of failed attempts (1 for the first
// failure): min(Max, Min·2^(failures-1)).
func (b Backoff) Ceiling(failures int) time.Duration {
	b = b.withDefaults()
	c := b.Min
	for i := 1; i < failures && c < b.Max; i++ {
		c *= 2
	}
	if c > b.Max {
		c = b.Max
	}
	return c
}

// Delay is the wait after the given number of failed attempts: a uniformly random duration
// in [0, Ceiling(failures)] (full jitter), or retryAfter capped to MaxRetryAfter when that is
// longer.
func (b Backoff) Delay(failures int, retryAfter time.Duration) time.Duration {
	b = b.withDefaults()
	c := b.Ceiling(failures)
	d := time.Duration(b.Rand(int64(c) + 1))
	if ra := b.CapRetryAfter(retryAfter); ra > d {
		d = ra
	}
	return d
}

// CapRetryAfter bounds a Retry-After value to MaxRetryAfter, so a destination cannot stall
// delivery for longer.
func (b Backoff) CapRetryAfter(ra time.Duration) time.Duration {
	b = b.withDefaults()
	if ra > b.MaxRetryAfter {
		return b.MaxRetryAfter
	}
	if ra < 0 {
		return 0
	}
	return ra
}
