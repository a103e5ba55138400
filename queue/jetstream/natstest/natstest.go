// Package natstest starts real NATS servers with JetStream inside the test process, from the
// nats-server module itself: one server, or a cluster of several on loopback, each with its
// own store directory. queue/jetstream, cmd/woorelay and bench use it; nothing is mocked.
package natstest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is one running NATS server.
type Server struct {
	*server.Server
	Opts *server.Options
}

// URL is the server's client URL.
func (s *Server) URL() string { return s.ClientURL() }

// Run starts a single JetStream server on a free loopback port; it stops when the test ends.
func Run(t testing.TB) *Server {
	t.Helper()
	s, err := Start(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// Start starts a server with these options and waits until it accepts clients.
func Start(o *server.Options) (*Server, error) {
	s, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("natstest: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("natstest: server on port %d not ready after 10s", o.Port)
	}
	return &Server{Server: s, Opts: o}, nil
}

// Cluster is a JetStream cluster of servers on loopback.
type Cluster struct {
	Nodes []*Server
	opts  []*server.Options
}

// URLs is every node's client URL, comma separated, as nats.Connect takes them.
func (c *Cluster) URLs() string {
	var u []string
	for _, o := range c.opts {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(u, ",")
}

// Kill stops node i at once (its store stays for Restart).
func (c *Cluster) Kill(i int) { c.Nodes[i].Shutdown(); c.Nodes[i].WaitForShutdown() }

// Restart starts node i again on its ports and store.
func (c *Cluster) Restart(i int) error {
	o := c.opts[i].Clone()
	s, err := Start(o)
	if err != nil {
		return err
	}
	c.Nodes[i] = s
	return nil
}

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	for _, s := range c.Nodes {
		s.Shutdown()
	}
}

// WaitReady waits until the cluster has a JetStream meta leader.
func (c *Cluster) WaitReady(timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, s := range c.Nodes {
			if s.Running() && s.JetStreamIsLeader() {
				return nil
			}
		}
	}
	return fmt.Errorf("natstest: no JetStream meta leader after %s", timeout)
}

// RunCluster starts an n-node cluster in dir (t.TempDir() when empty); it stops when the
// test ends.
func RunCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := StartCluster(t.TempDir(), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	return c
}

// StartCluster starts an n-node cluster with its stores under dir and waits for its leader.
func StartCluster(dir string, n int) (*Cluster, error) {
	clientPorts, routePorts := freePorts(n), freePorts(n)
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	c := &Cluster{}
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: clientPorts[i],
			JetStream: true, StoreDir: fmt.Sprintf("%s/n%d", dir, i+1), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "woorelay", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		c.opts = append(c.opts, o)
	}
	for _, o := range c.opts {
		s, err := server.NewServer(o)
		if err != nil {
			c.Shutdown()
			return nil, fmt.Errorf("natstest: %w", err)
		}
		go s.Start()
		c.Nodes = append(c.Nodes, &Server{Server: s, Opts: o})
	}
	for _, s := range c.Nodes {
		if !s.ReadyForConnections(20 * time.Second) {
			c.Shutdown()
			return nil, fmt.Errorf("natstest: node %s not ready", s.Opts.ServerName)
		}
	}
	if err := c.WaitReady(30 * time.Second); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// freePorts returns n loopback ports free at the time of asking.
func freePorts(n int) []int {
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
