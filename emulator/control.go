package emulator

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// serveControl serves the JSON control API under /emulator/:
//
//	GET    /emulator/requests        records as JSON lines, oldest first; filters: visitor,
//	                                 project, endpoint, outcome, status, since (seq > since)
//	DELETE /emulator/requests        forget the records
//	GET    /emulator/visitors        profiles as a JSON array (?project= to pick one project)
//	GET    /emulator/visitors/{id}   the profile a cv_id, cv_email or cookie leads to
//	GET    /emulator/faults          the faults still to apply
//	POST   /emulator/faults          replace the faults (Faults JSON; PUT works too)
//	DELETE /emulator/faults          clear the faults
//	POST   /emulator/scripts         add per-visitor scripts: {"v7": [500, 200], "v9": [403]}
//	POST   /emulator/release         answer hung requests: {"released": N}
//	POST   /emulator/reset           forget everything and release hung requests
//	GET    /emulator/stats           the counters (Stats JSON)
func (e *Emulator) serveControl(w http.ResponseWriter, r *http.Request) {
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/emulator"), "/")
	name, sub, _ := strings.Cut(rest, "/")
	allow := func(methods ...string) bool {
		for _, m := range methods {
			if r.Method == m {
				return true
			}
		}
		w.Header().Set("Allow", strings.Join(methods, ", "))
		jsonError(w, http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path)
		return false
	}
	switch {
	case name == "":
		if allow(http.MethodGet) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprint(w, indexText)
		}
	case name == "requests" && sub == "":
		if !allow(http.MethodGet, http.MethodDelete) {
			return
		}
		if r.Method == http.MethodDelete {
			e.records.reset()
			writeJSON(w, map[string]bool{"cleared": true})
			return
		}
		keep, err := recordFilter(r)
		if err != nil {
			jsonError(w, http.StatusBadRequest, "%v", err)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		bw := bufio.NewWriterSize(w, 32<<10)
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		for _, rec := range e.records.snapshot(keep) {
			if err := enc.Encode(rec); err != nil {
				return
			}
		}
		bw.Flush()
	case name == "visitors":
		if !allow(http.MethodGet) {
			return
		}
		project := r.URL.Query().Get("project")
		if sub == "" {
			writeJSON(w, e.profiles.visitors(project))
			return
		}
		v, ok := e.profiles.find(project, sub)
		if !ok {
			jsonError(w, http.StatusNotFound, "no visitor %q", sub)
			return
		}
		writeJSON(w, v)
	case name == "faults" && sub == "":
		if !allow(http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete) {
			return
		}
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, e.Faults())
		case http.MethodDelete:
			e.ClearFaults()
			writeJSON(w, e.Faults())
		default:
			var f Faults
			if !readJSON(w, r, &f) {
				return
			}
			if err := e.SetFaults(f); err != nil {
				jsonError(w, http.StatusBadRequest, "%v", err)
				return
			}
			writeJSON(w, e.Faults())
		}
	case name == "scripts" && sub == "":
		if !allow(http.MethodPost) {
			return
		}
		var scripts map[string][]Step
		if !readJSON(w, r, &scripts) {
			return
		}
		if err := (Faults{Visitors: scripts}).validate(); err != nil {
			jsonError(w, http.StatusBadRequest, "%v", err)
			return
		}
		for v, steps := range scripts {
			e.faults.script(v, steps)
		}
		writeJSON(w, e.Faults())
	case name == "release" && sub == "":
		if allow(http.MethodPost) {
			writeJSON(w, map[string]int{"released": e.Release()})
		}
	case name == "reset" && sub == "":
		if allow(http.MethodPost) {
			e.Reset()
			writeJSON(w, map[string]bool{"reset": true})
		}
	case name == "stats" && sub == "":
		if allow(http.MethodGet) {
			writeJSON(w, e.Stats())
		}
	default:
		jsonError(w, http.StatusNotFound, "no such control endpoint %s", r.URL.Path)
	}
}

// recordFilter reads the filters of GET /emulator/requests.
func recordFilter(r *http.Request) (func(*Record) bool, error) {
	q := r.URL.Query()
	visitor, project, endpoint, outcome := q.Get("visitor"), q.Get("project"), q.Get("endpoint"), q.Get("outcome")
	var since uint64
	status := -1
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("since=%q: want a sequence number", v)
		}
		since = n
	}
	if v := q.Get("status"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("status=%q: want an HTTP status", v)
		}
		status = n
	}
	if visitor == "" && project == "" && endpoint == "" && outcome == "" && since == 0 && status < 0 {
		return nil, nil
	}
	return func(rec *Record) bool {
		return (visitor == "" || rec.Visitor == visitor) &&
			(project == "" || rec.Project == project) &&
			(endpoint == "" || rec.Endpoint == endpoint) &&
			(outcome == "" || string(rec.Outcome) == outcome) &&
			rec.Seq > since &&
			(status < 0 || rec.Status == status)
	}, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func jsonError(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"error": fmt.Sprintf(format, args...)})
	w.Write(append(b, '\n'))
}

// readJSON decodes the request body into v, rejecting unknown fields; an empty body leaves v
// at its zero value. It answers 400 itself and returns false on an error.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		jsonError(w, http.StatusBadRequest, "reading the body: %v", err)
		return false
	}
	if strings.TrimSpace(string(body)) == "" {
		return true
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		jsonError(w, http.StatusBadRequest, "invalid JSON: %v", err)
		return false
	}
	return true
}
