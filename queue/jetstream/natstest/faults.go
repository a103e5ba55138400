package natstest

import (
	"bytes"
	"io"
	"net"

	"sync"
	"time"
)

// Faults is a TCP proxy in front of every port of a cluster's nodes (clients' and routes'),
// so that a test can freeze a node the way SIGSTOP does: its connections stay open and new
// ones are accepted, but nothing goes in or out of it until Thaw. A route connection carries
// both of its nodes' names (the dialing node's is read from its CONNECT line), so freezing a
// node stops the traffic it sends and receives over routes it dialed too.
type Faults struct {
	mu     sync.Mutex
	cond   *sync.Cond
	frozen map[int]bool
	ids    map[string]int // server id -> node
	lns    []net.Listener
	conns  map[net.Conn]struct{}
	closed bool
}

func newFaults() *Faults {
	f := &Faults{frozen: map[int]bool{}, ids: map[string]int{}, conns: map[net.Conn]struct{}{}}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// Freeze stops all traffic to and from node i (as SIGSTOP of its process would).
func (f *Faults) Freeze(i int) {
	f.mu.Lock()
	f.frozen[i] = true
	f.mu.Unlock()
}

// Thaw lets node i's traffic flow again (as SIGCONT would).
func (f *Faults) Thaw(i int) {
	f.mu.Lock()
	delete(f.frozen, i)
	f.cond.Broadcast()
	f.mu.Unlock()
}

// setID records which node a server id is (after a start or restart).
func (f *Faults) setID(id string, i int) {
	f.mu.Lock()
	f.ids[id] = i
	f.mu.Unlock()
}

// wait blocks while either end of a connection is frozen; false once the proxy is closed.
func (f *Faults) wait(ends *[2]int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for !f.closed && (f.frozen[ends[0]] || f.frozen[ends[1]]) {
		f.cond.Wait()
	}
	return !f.closed
}

// listen starts a proxy to target on a free loopback port for node i's clients (route false)
// or routes, and returns its host:port.
func (f *Faults) listen(target string, i int, route bool) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	f.lns = append(f.lns, ln)
	f.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c, target, i, route)
		}
	}()
	return ln.Addr().String(), nil
}

// serve proxies one connection to node i. A route's dialer is named by the "name" (its
// server id) of the CONNECT it sends first; until then nothing flows back to it.
func (f *Faults) serve(c net.Conn, target string, i int, route bool) {
	ends := &[2]int{i, i}
	if !f.wait(ends) { // a frozen process accepts nothing
		c.Close()
		return
	}
	s, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	if !f.track(c, s) {
		return
	}
	defer f.untrack(c, s)
	known := make(chan struct{})
	if !route {
		close(known)
	}
	done := make(chan struct{}, 2)
	go func() { // dialer -> node i
		defer func() { done <- struct{}{} }()
		if route {
			var head []byte
			buf := make([]byte, 4096)
			for {
				n, err := c.Read(buf)
				head = append(head, buf[:n]...)
				j, ok := f.dialer(head)
				if ok || len(head) > 8<<10 || err != nil {
					f.mu.Lock()
					ends[0] = j
					f.mu.Unlock()
					close(known)
					if err != nil {
						return
					}
					break
				}
			}
			if !f.wait(ends) {
				return
			}
			if _, err := s.Write(head); err != nil {
				return
			}
		}
		copyGated(s, c, func() bool { return f.wait(ends) })
	}()
	go func() { // node i -> dialer
		select {
		case <-known:
		case <-time.After(5 * time.Second):
		}
		copyGated(c, s, func() bool { return f.wait(ends) })
		done <- struct{}{}
	}()
	<-done
}

// dialer finds the node that sent a route CONNECT line, by the server id in it.
func (f *Faults) dialer(head []byte) (int, bool) {
	line, _, ok := bytes.Cut(head, []byte("\r\n"))
	if !ok {
		return -1, false
	}
	_, rest, ok := bytes.Cut(line, []byte(`"name":"`))
	if !ok {
		return -1, true
	}
	id, _, _ := bytes.Cut(rest, []byte(`"`))
	f.mu.Lock()
	defer f.mu.Unlock()
	if j, ok := f.ids[string(id)]; ok {
		return j, true
	}
	return -1, true
}

// copyGated copies src to dst, each chunk once open() allows it.
func copyGated(dst io.Writer, src io.Reader, open func() bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !open() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (f *Faults) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		f.conns[c] = struct{}{}
	}
	return true
}

func (f *Faults) untrack(cs ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(f.conns, c)
	}
}

// close stops every proxy and closes its connections.
func (f *Faults) close() {
	f.mu.Lock()
	f.closed = true
	f.cond.Broadcast()
	for _, ln := range f.lns {
		ln.Close()
	}
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
}
