// The go-plugin peer's plugin: an in-memory KV (gRPC, or net/rpc when
// TETHER_BENCH_GO_PROTOCOL=netrpc) and the bidirectional counter of go-plugin's example.
package main

import (
	"fmt"
	"os"
	"sync"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"tetherbench/shared"
)

// The gRPC server's default receive limit is 4 MiB; the 16 and 64 MiB rows need more, as any
// application moving large values through go-plugin must configure.
const maxMessage = 128 << 20

type store struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *store) Put(key string, value []byte) error {
	s.mu.Lock()
	s.m[key] = value
	s.mu.Unlock()
	return nil
}

func (s *store) Get(key string) ([]byte, error) {
	s.mu.Lock()
	v, ok := s.m[key]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no such key: %q", key)
	}
	return v, nil
}

type counter struct {
	mu sync.Mutex
	m  map[string]int64
}

func (c *counter) Put(key string, value int64, a shared.AddHelper) error {
	c.mu.Lock()
	current := c.m[key]
	c.mu.Unlock()
	sum, err := a.Sum(current, value)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.m[key] = sum
	c.mu.Unlock()
	return nil
}

func (c *counter) Get(key string) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key], nil
}

func main() {
	kv := &shared.KVPlugin{Impl: &store{m: map[string][]byte{}}}
	if os.Getenv("TETHER_BENCH_GO_PROTOCOL") == "netrpc" {
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig: shared.Handshake,
			Plugins:         map[string]plugin.Plugin{"kv": kv},
		})
		return
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: shared.Handshake,
		Plugins: map[string]plugin.Plugin{
			"kv":      kv,
			"counter": &shared.CounterPlugin{Impl: &counter{m: map[string]int64{}}},
		},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, grpc.MaxRecvMsgSize(maxMessage), grpc.MaxSendMsgSize(maxMessage))
			return grpc.NewServer(opts...)
		},
	})
}
