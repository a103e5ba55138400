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
	// Faults is the proxy in front of every node's ports, nil unless the cluster was started
	// with RunFaultCluster: its Freeze and Thaw hang a node and let it go.
	Faults  *Faults
	proxied []string // each node's client URL through Faults
}

// URLs is every node's client URL (through Faults when it has them), comma separated, as
// nats.Connect takes them.
func (c *Cluster) URLs() string {
	if c.proxied != nil {
		return strings.Join(c.proxied, ",")
	}
	var u []string
	for _, o := range c.opts {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(u, ",")
}

// URL is node i's client URL (through Faults when it has them).
func (c *Cluster) URL(i int) string {
	if c.proxied != nil {
		return c.proxied[i]
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port)
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
	if c.Faults != nil {
		c.Faults.setID(s.ID(), i)
	}
	return nil
}

// Shutdown stops every node (and the proxies in front of them).
func (c *Cluster) Shutdown() {
	if c.Faults != nil {
		c.Faults.close()
	}
	for _, s := range c.Nodes {
		s.Shutdown()
	}
}

// Leader is the node that leads stream's replicas (-1 when none does): the one to freeze to
// hang a stream's leader.
func (c *Cluster) Leader(stream string) int {
	for i, s := range c.Nodes {
		if s.Running() && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
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

// RunFaultCluster is RunCluster with every node's client and route ports behind Faults, so
// that the test can hang a node (Faults.Freeze) without killing it.
func RunFaultCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := startCluster(t.TempDir(), n, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	return c
}

// StartCluster starts an n-node cluster with its stores under dir and waits for its leader.
func StartCluster(dir string, n int) (*Cluster, error) { return startCluster(dir, n, false) }

func startCluster(dir string, n int, faults bool) (*Cluster, error) {
	clientPorts, routePorts := freePorts(n), freePorts(n)
	c := &Cluster{}
	routeAddrs, clientAdv := make([]string, n), make([]string, n)
	for i := range n {
		routeAddrs[i] = fmt.Sprintf("127.0.0.1:%d", routePorts[i])
	}
	if faults {
		c.Faults = newFaults()
		for i := range n {
			ca, err := c.Faults.listen(fmt.Sprintf("127.0.0.1:%d", clientPorts[i]), i, false)
			if err != nil {
				c.Faults.close()
				return nil, fmt.Errorf("natstest: %w", err)
			}
			ra, err := c.Faults.listen(routeAddrs[i], i, true)
			if err != nil {
				c.Faults.close()
				return nil, fmt.Errorf("natstest: %w", err)
			}
			clientAdv[i], routeAddrs[i] = ca, ra
			c.proxied = append(c.proxied, "nats://"+ca)
		}
	}
	var routes []string
	for _, a := range routeAddrs {
		routes = append(routes, "nats-route://"+a)
	}
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: clientPorts[i],
			JetStream: true, StoreDir: fmt.Sprintf("%s/n%d", dir, i+1), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "woorelay", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		if faults { // every address a node tells others is its proxy's; routes in plain text
			o.ClientAdvertise, o.Cluster.Advertise = clientAdv[i], routeAddrs[i]
			o.Cluster.Compression = server.CompressionOpts{Mode: server.CompressionOff}
		}
		c.opts = append(c.opts, o)
	}
	for _, o := range c.opts {
		s, err := server.NewServer(o)
		if err != nil {
			c.Shutdown()
			return nil, fmt.Errorf("natstest: %w", err)
		}
		if c.Faults != nil {
			c.Faults.setID(s.ID(), len(c.Nodes))
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
