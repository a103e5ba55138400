package mapping

import "strconv"

// AppendJSONLine renders the result as the JSON line `woorelay transform` prints for the event
// at index, followed by a newline. The shape is a stable contract:
//
//	{"index":N,"outcome":"send","mapping":M,"requests":[{"method","endpoint","url","params":{},"headers":{}}]}
//	{"index":N,"outcome":"rejected","mapping":M,"code":C,"error":E}
//	{"index":N,"outcome":"skipped","mapping":M,"reason":R}
//
// with "mapping" omitted when no mapping applied and an optional "warnings" list.
func (res Result) AppendJSONLine(b []byte, index int) []byte {
	b = append(b, `{"index":`...)
	b = strconv.AppendInt(b, int64(index), 10)
	b = append(b, `,"outcome":`...)
	b = strconv.AppendQuote(b, res.Outcome.String())
	if res.Mapping != "" {
		b = append(b, `,"mapping":`...)
		b = appendJSONString(b, res.Mapping)
	}
	switch res.Outcome {
	case Send:
		b = append(b, `,"requests":[`...)
		for i, r := range res.Requests {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"method":`...)
			b = appendJSONString(b, r.Method)
			b = append(b, `,"endpoint":`...)
			b = appendJSONString(b, r.Endpoint)
			b = append(b, `,"url":`...)
			b = appendJSONString(b, r.URL)
			b = append(b, `,"params":`...)
			b = appendParams(b, r.Params)
			b = append(b, `,"headers":`...)
			b = appendParams(b, r.Headers)
			b = append(b, '}')
		}
		b = append(b, ']')
	case Rejected:
		b = append(b, `,"code":`...)
		b = appendJSONString(b, res.Code)
		b = append(b, `,"error":`...)
		b = appendJSONString(b, res.Error)
	case Skipped:
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, res.Reason)
	}
	if len(res.Warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range res.Warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, w)
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...)
}

func appendParams(b []byte, ps []Param) []byte {
	b = append(b, '{')
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, p.Name)
		b = append(b, ':')
		b = appendJSONString(b, p.Value)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string (valid UTF-8 is kept, control characters escaped).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, `\u00`...)
			b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
