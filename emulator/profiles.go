package emulator

import (
	"cmp"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Visitor is one visitor profile of one project, as built from the requests accepted.
type Visitor struct {
	// Project is the project the profile belongs to; profiles never span projects.
	Project string `json:"project"`
	// Key is the profile's highest identifier: its id, else its first email, else its first
	// cookie.
	Key string `json:"key"`
	// ID is the cv_id, Emails the cv_email values and Cookies the cookies that lead to this
	// profile (cookies trimmed to 24 characters, ids and emails to 140, as Woopra documents).
	ID      string   `json:"id,omitempty"`
	Emails  []string `json:"emails,omitempty"`
	Cookies []string `json:"cookies,omitempty"`
	// Properties are the visitor properties (cv_ parameters without the prefix); a later value
	// replaces an earlier one.
	Properties map[string]string `json:"properties,omitempty"`
	// VisitProperties are the latest visit properties (cs_ parameters without the prefix).
	VisitProperties map[string]string `json:"visit_properties,omitempty"`
	// Actions is the timeline: the /track/ce events, ordered by their time (the timestamp
	// parameter, else the time received), then by arrival.
	Actions []Action `json:"actions"`
	// Requests counts the requests applied to the profile (pings and identifies included).
	Requests int `json:"requests"`
	// FirstSeen and LastSeen are when the first and last applied requests arrived.
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// DroppedActions counts the oldest actions dropped because of Options.MaxActions.
	DroppedActions int `json:"dropped_actions,omitempty"`
}

// Action is one event in a visitor's timeline.
type Action struct {
	// Seq is the Seq of the request that created the action.
	Seq uint64 `json:"seq"`
	// Name is the event name (event, else the legacy ce_name).
	Name string `json:"name"`
	// Time is the timestamp parameter (ms since the epoch) or, without a usable one, Received.
	Time     time.Time `json:"time"`
	Received time.Time `json:"received"`
	// Properties are the event properties (ce_ parameters without the prefix), in order.
	Properties Params `json:"properties,omitempty"`
	// Idptnc is the action id /track/update refers to; Duration is the duration (ms) sent.
	Idptnc   string `json:"idptnc,omitempty"`
	Duration string `json:"duration,omitempty"`
	// IP is the ip parameter, else the connection's address.
	IP string `json:"ip,omitempty"`
	// UserAgent is the User-Agent header (else a user-agent parameter).
	UserAgent string `json:"user_agent,omitempty"`
	// Browser, OS and Device are the override parameters of those names, Referer the referer
	// parameter, Language, Screen and App theirs.
	Browser  string `json:"browser,omitempty"`
	OS       string `json:"os,omitempty"`
	Device   string `json:"device,omitempty"`
	Referer  string `json:"referer,omitempty"`
	Language string `json:"language,omitempty"`
	Screen   string `json:"screen,omitempty"`
	App      string `json:"app,omitempty"`
	// Timeout is the idle timeout in ms (the timeout parameter, default 30000).
	Timeout int64 `json:"timeout_ms"`
}

// Identifier limits Woopra documents: "cookie ... will trim the first 24 characters", cv_id and
// cv_email trimmed to 140.
const (
	maxCookieLen = 24
	maxIDLen     = 140
)

func trimTo(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

type profile struct {
	n        int // creation order
	id       string
	emails   []string
	cookies  []string
	props    map[string]string
	visit    map[string]string
	actions  []Action
	requests int
	first    time.Time
	last     time.Time
	dropped  int
}

type projectProfiles struct {
	byID, byEmail, byCookie map[string]*profile
	live                    map[*profile]struct{}
}

// profileStore holds every project's profiles behind one lock that is never held during I/O.
type profileStore struct {
	mu         sync.Mutex
	projects   map[string]*projectProfiles
	next       int
	maxActions int
}

// hit is one accepted request (or push item) to apply.
type hit struct {
	endpoint string
	project  string
	ids      [3]string // trimmed cv_id, cv_email, cookie
	params   Params
	seq      uint64
	received time.Time
	action   *Action // /track/ce with an event
}

// conflict says whether two identities belong to different people: different ids, or (when
// either has no id) emails that have nothing in common. Cookies never conflict.
func conflict(idA string, emailsA []string, idB string, emailsB []string) bool {
	if idA != "" && idB != "" {
		return idA != idB
	}
	if len(emailsA) == 0 || len(emailsB) == 0 {
		return false
	}
	for _, e := range emailsA {
		if slices.Contains(emailsB, e) {
			return false
		}
	}
	return true
}

func one(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// apply attributes h to a profile, creating, linking and merging profiles by the identifier
// hierarchy cv_id > cv_email > cookie:
//
//   - the candidates are the profiles the request's id, email and cookie already lead to;
//   - the request goes to the highest candidate that does not conflict with it, else to a new
//     profile;
//   - every other candidate that does not conflict with that profile is merged into it (its
//     identifiers, properties it lacks and actions move over); one that conflicts only loses
//     the request's identifier, which now leads to the chosen profile (the latest request wins
//     the mapping).
//
// It returns false for a /track/update whose idptnc matches no action of the profile.
func (ps *profileStore) apply(h *hit) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	pp := ps.projects[h.project]
	if pp == nil {
		pp = &projectProfiles{byID: map[string]*profile{}, byEmail: map[string]*profile{},
			byCookie: map[string]*profile{}, live: map[*profile]struct{}{}}
		if ps.projects == nil {
			ps.projects = map[string]*projectProfiles{}
		}
		ps.projects[h.project] = pp
	}
	id, email, cookie := h.ids[0], h.ids[1], h.ids[2]
	cands := [3]*profile{}
	if id != "" {
		cands[0] = pp.byID[id]
	}
	if email != "" {
		cands[1] = pp.byEmail[email]
	}
	if cookie != "" {
		cands[2] = pp.byCookie[cookie]
	}
	var t *profile
	for _, c := range cands {
		if c != nil && !conflict(c.id, c.emails, id, one(email)) {
			t = c
			break
		}
	}
	if t == nil {
		ps.next++
		t = &profile{n: ps.next, props: map[string]string{}, first: h.received}
		pp.live[t] = struct{}{}
	}
	// The chosen profile takes the request's identifiers first, so merges are checked against
	// the identity it is about to have.
	if id != "" && t.id == "" {
		t.id = id
	}
	if email != "" && !slices.Contains(t.emails, email) {
		t.emails = append(t.emails, email)
	}
	for level, c := range cands {
		if c == nil || c == t {
			continue
		}
		if !conflict(c.id, c.emails, t.id, t.emails) {
			ps.merge(pp, t, c)
			continue
		}
		switch level { // conflicting: only the request's identifier moves
		case 1:
			c.emails = slices.DeleteFunc(c.emails, func(e string) bool { return e == email })
		case 2:
			c.cookies = slices.DeleteFunc(c.cookies, func(e string) bool { return e == cookie })
		}
	}
	if cookie != "" && !slices.Contains(t.cookies, cookie) {
		t.cookies = append(t.cookies, cookie)
	}
	if t.id != "" {
		pp.byID[t.id] = t
	}
	for _, e := range t.emails {
		pp.byEmail[e] = t
	}
	for _, c := range t.cookies {
		pp.byCookie[c] = t
	}
	return ps.update(t, h)
}

// merge moves everything of c into t and forgets c.
func (ps *profileStore) merge(pp *projectProfiles, t, c *profile) {
	if t.id == "" {
		t.id = c.id
	}
	for _, e := range c.emails {
		if !slices.Contains(t.emails, e) {
			t.emails = append(t.emails, e)
		}
	}
	for _, k := range c.cookies {
		if !slices.Contains(t.cookies, k) {
			t.cookies = append(t.cookies, k)
		}
	}
	for k, v := range c.props {
		if _, ok := t.props[k]; !ok {
			t.props[k] = v
		}
	}
	if len(c.visit) > 0 && len(t.visit) == 0 {
		t.visit = c.visit
	}
	t.actions = append(t.actions, c.actions...)
	slices.SortStableFunc(t.actions, compareActions)
	t.requests += c.requests
	t.dropped += c.dropped
	if c.first.Before(t.first) {
		t.first = c.first
	}
	if c.last.After(t.last) {
		t.last = c.last
	}
	ps.trim(t)
	delete(pp.live, c)
}

func compareActions(a, b Action) int {
	if c := a.Time.Compare(b.Time); c != 0 {
		return c
	}
	return cmp.Compare(a.Seq, b.Seq)
}

func (ps *profileStore) trim(t *profile) {
	if ps.maxActions > 0 && len(t.actions) > ps.maxActions {
		n := len(t.actions) - ps.maxActions
		t.actions = slices.Delete(t.actions, 0, n)
		t.dropped += n
	}
}

// update applies the request's properties and action to t; false for an update of an unknown
// action.
func (ps *profileStore) update(t *profile, h *hit) bool {
	t.requests++
	if h.received.After(t.last) {
		t.last = h.received
	}
	if h.received.Before(t.first) {
		t.first = h.received
	}
	for _, p := range h.params {
		switch {
		case strings.HasPrefix(p.Key, "cv_"):
			t.props[p.Key[3:]] = p.Value
		case strings.HasPrefix(p.Key, "cs_"):
			if t.visit == nil {
				t.visit = map[string]string{}
			}
			t.visit[p.Key[3:]] = p.Value
		}
	}
	switch h.endpoint {
	case "ce":
		if h.action == nil {
			return true
		}
		t.actions = append(t.actions, *h.action)
		for i := len(t.actions) - 1; i > 0 && compareActions(t.actions[i], t.actions[i-1]) < 0; i-- {
			t.actions[i], t.actions[i-1] = t.actions[i-1], t.actions[i]
		}
		ps.trim(t)
	case "update":
		idptnc := h.params.Get("idptnc")
		for i := len(t.actions) - 1; i >= 0; i-- {
			if t.actions[i].Idptnc != idptnc {
				continue
			}
			a := t.actions[i] // copy on write: snapshots share Properties
			var s paramSet
			s.list = append(Params(nil), a.Properties...)
			for _, p := range h.params {
				if strings.HasPrefix(p.Key, "ce_") {
					if j := slices.IndexFunc(s.list, func(q Param) bool { return q.Key == p.Key[3:] }); j >= 0 {
						s.list[j].Value = p.Value
						continue
					}
					s.add(p.Key[3:], p.Value, "")
				}
			}
			a.Properties = s.list
			if d, ok := h.params.Lookup("duration"); ok {
				a.Duration = d
			}
			t.actions[i] = a
			return true
		}
		return false
	}
	return true
}

func cloneOrNil(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

func (p *profile) view(project string) Visitor {
	v := Visitor{
		Project:        project,
		ID:             p.id,
		Emails:         cloneOrNil(p.emails),
		Cookies:        cloneOrNil(p.cookies),
		Actions:        slices.Clone(p.actions),
		Requests:       p.requests,
		FirstSeen:      p.first,
		LastSeen:       p.last,
		DroppedActions: p.dropped,
	}
	if v.Actions == nil {
		v.Actions = []Action{}
	}
	if len(p.props) > 0 {
		v.Properties = maps.Clone(p.props)
	}
	if len(p.visit) > 0 {
		v.VisitProperties = maps.Clone(p.visit)
	}
	switch {
	case p.id != "":
		v.Key = p.id
	case len(p.emails) > 0:
		v.Key = p.emails[0]
	case len(p.cookies) > 0:
		v.Key = p.cookies[0]
	}
	return v
}

// visitors copies every profile (of project, or of all projects when it is ""), ordered by
// project and then by creation.
func (ps *profileStore) visitors(project string) []Visitor {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := []Visitor{}
	for _, name := range ps.projectNames(project) {
		pp := ps.projects[name]
		list := make([]*profile, 0, len(pp.live))
		for p := range pp.live {
			list = append(list, p)
		}
		slices.SortFunc(list, func(a, b *profile) int { return a.n - b.n })
		for _, p := range list {
			out = append(out, p.view(name))
		}
	}
	return out
}

// find returns the profile an identifier (id, email or cookie, in that order) leads to, in
// project or, when project is "", in the first project (by name) that has one.
func (ps *profileStore) find(project, key string) (Visitor, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, name := range ps.projectNames(project) {
		pp := ps.projects[name]
		for _, m := range []map[string]*profile{pp.byID, pp.byEmail, pp.byCookie} {
			if p := m[key]; p != nil {
				return p.view(name), true
			}
		}
	}
	return Visitor{}, false
}

// projectNames returns the names of the projects held that match project (all when it is ""),
// sorted; the caller holds ps.mu.
func (ps *profileStore) projectNames(project string) []string {
	names := make([]string, 0, len(ps.projects))
	for name := range ps.projects {
		if project == "" || name == project {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

func (ps *profileStore) count() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	n := 0
	for _, pp := range ps.projects {
		n += len(pp.live)
	}
	return n
}

func (ps *profileStore) reset() {
	ps.mu.Lock()
	ps.projects = nil
	ps.mu.Unlock()
}
