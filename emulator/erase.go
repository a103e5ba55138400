package emulator

// Identity is what names a visitor to Woopra: cv_id, the e-mail addresses and the cookies.
type Identity struct {
	ID      string
	Emails  []string
	Cookies []string
}

// Erased counts what Erase removed.
type Erased struct {
	Requests int `json:"requests"` // request records
	Visitors int `json:"visitors"` // visitor profiles
}

// Erase removes the request records and the visitor profiles whose identifiers match selects
// (a record by its cv_id, cv_email and cookie, or any of its beacon items'; a profile by all
// it has collected), so that an erasure request reaches the sandbox too.
func (e *Emulator) Erase(match func(Identity) bool) Erased {
	var out Erased
	rc := &e.records
	rc.mu.Lock()
	kept := rc.buf[:0:0]
	for i := range rc.buf {
		r := rc.buf[(rc.start+i)%len(rc.buf)]
		if recordMatches(r, match) {
			out.Requests++
			continue
		}
		kept = append(kept, r)
	}
	rc.buf, rc.start = kept, 0
	rc.mu.Unlock()

	ps := &e.profiles
	ps.mu.Lock()
	for _, pp := range ps.projects {
		for p := range pp.live {
			if !match(Identity{ID: p.id, Emails: p.emails, Cookies: p.cookies}) {
				continue
			}
			delete(pp.live, p)
			for _, m := range []map[string]*profile{pp.byID, pp.byEmail, pp.byCookie} {
				for k, q := range m {
					if q == p {
						delete(m, k)
					}
				}
			}
			out.Visitors++
		}
	}
	ps.mu.Unlock()
	return out
}

func recordMatches(r *Record, match func(Identity) bool) bool {
	if match(identityOf(r.Params)) {
		return true
	}
	for _, it := range r.Items {
		if match(identityOf(it.Params)) {
			return true
		}
	}
	return false
}

func identityOf(ps Params) Identity {
	ids := rawIDs(ps)
	return Identity{ID: ids[0], Emails: one(ids[1]), Cookies: one(ids[2])}
}
