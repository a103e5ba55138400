package ceiling

import (
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// epochMillis converts a present timestamp value to milliseconds since the Unix epoch, with the
// engine's rules and messages: ISO-8601 / RFC 3339 strings with a zone (Z, ±hh:mm, ±hhmm, ±hh)
// or without one (UTC), date-only strings, a space instead of the T, and epoch numbers or
// numeric strings (below 1e11 in magnitude read as seconds, above as milliseconds).
func epochMillis(r gjson.Result) (int64, error) {
	switch r.Type {
	case gjson.Number:
		return epochFromNumber(r.Raw)
	case gjson.String:
		s := strings.TrimSpace(r.Str)
		if s == "" {
			return 0, errors.New("timestamp is an empty string")
		}
		if c := s[0]; c == '-' || c == '+' || (c >= '0' && c <= '9' && len(s) > 4 && s[4] != '-') {
			if ms, err := epochFromNumber(s); err == nil {
				return ms, nil
			}
		}
		if ms, ok := parseISO(s); ok {
			return ms, nil
		}
		return 0, errors.New("timestamp " + strconv.Quote(r.Str) + " is neither ISO-8601 nor an epoch number")
	}
	return 0, errors.New("timestamp is a " + kindName(r) + ", want an ISO-8601 string or an epoch number")
}

func epochFromNumber(text string) (int64, error) {
	if i, err := strconv.ParseInt(text, 10, 64); err == nil {
		if i > -1e11 && i < 1e11 {
			return i * 1000, nil
		}
		return i, nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 9e15 {
		return 0, errors.New("timestamp " + strconv.Quote(text) + " is not a usable epoch number")
	}
	if math.Abs(f) < 1e11 {
		return int64(math.Floor(f*1000 + 1e-6)), nil
	}
	return int64(f), nil
}

// parseISO parses YYYY-MM-DD[(T| )hh:mm[:ss[.frac]]][zone] without allocating.
func parseISO(s string) (int64, bool) {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return 0, false
	}
	year, ok1 := digits(s, 0, 4)
	month, ok2 := digits(s, 5, 2)
	day, ok3 := digits(s, 8, 2)
	if !ok1 || !ok2 || !ok3 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
		return 0, false
	}
	ms := daysFromCivil(year, month, day) * 86400000
	rest := s[10:]
	if rest == "" {
		return ms, true
	}
	if rest[0] != 'T' && rest[0] != 't' && rest[0] != ' ' {
		return 0, false
	}
	rest = rest[1:]
	if len(rest) < 5 || rest[2] != ':' {
		return 0, false
	}
	hh, ok1 := digits(rest, 0, 2)
	mm, ok2 := digits(rest, 3, 2)
	if !ok1 || !ok2 || hh > 24 || mm > 59 {
		return 0, false
	}
	ms += int64(hh)*3600000 + int64(mm)*60000
	rest = rest[5:]
	if len(rest) >= 3 && rest[0] == ':' {
		ss, ok := digits(rest, 1, 2)
		if !ok || ss > 60 {
			return 0, false
		}
		ms += int64(ss) * 1000
		rest = rest[3:]
		if len(rest) >= 2 && (rest[0] == '.' || rest[0] == ',') {
			i := 1
			frac, scale := 0, 100
			for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
				frac += int(rest[i]-'0') * scale
				scale /= 10
				i++
			}
			if i == 1 {
				return 0, false
			}
			ms += int64(frac)
			rest = rest[i:]
		}
	}
	switch {
	case rest == "" || rest == "Z" || rest == "z":
		return ms, true
	case rest[0] == '+' || rest[0] == '-':
		sign := int64(1)
		if rest[0] == '-' {
			sign = -1
		}
		z := rest[1:]
		var oh, om int
		var ok bool
		switch len(z) {
		case 2:
			oh, ok = digits(z, 0, 2)
		case 4:
			var ok2 bool
			oh, ok = digits(z, 0, 2)
			om, ok2 = digits(z, 2, 2)
			ok = ok && ok2
		case 5:
			if z[2] != ':' {
				return 0, false
			}
			var ok2 bool
			oh, ok = digits(z, 0, 2)
			om, ok2 = digits(z, 3, 2)
			ok = ok && ok2
		}
		if !ok || oh > 23 || om > 59 {
			return 0, false
		}
		return ms - sign*(int64(oh)*3600000+int64(om)*60000), true
	}
	return 0, false
}

// digits reads n decimal digits of s at at.
func digits(s string, at, n int) (int, bool) {
	if at+n > len(s) {
		return 0, false
	}
	v := 0
	for i := at; i < at+n; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil is Howard Hinnant's days_from_civil: days since 1970-01-01 of a proleptic
// Gregorian date.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}
