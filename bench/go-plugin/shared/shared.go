// Package shared holds what the go-plugin host and plugin of the benchmark agree on: the
// handshake, the plugin map, and the gRPC and net/rpc glue that go-plugin asks its users to
// write by hand for every interface.
package shared

import (
	"context"
	"net/rpc"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"tetherbench/proto"
)

// Handshake is the magic cookie and protocol version both sides check.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "TETHER_BENCH_GO_PLUGIN",
	MagicCookieValue: "6d1f3c2a-kv",
}

// KV is the interface the host uses and the plugin implements.
type KV interface {
	Put(key string, value []byte) error
	Get(key string) ([]byte, error)
}

// AddHelper is the host object the counter plugin calls back.
type AddHelper interface {
	Sum(a, b int64) (int64, error)
}

// Counter adds to a key through the host's AddHelper.
type Counter interface {
	Put(key string, value int64, a AddHelper) error
	Get(key string) (int64, error)
}

// PluginMap is what both sides register; "kv" speaks gRPC or net/rpc, "counter" gRPC only (the
// broker callback of go-plugin's bidirectional example).
var PluginMap = map[string]plugin.Plugin{
	"kv":      &KVPlugin{},
	"counter": &CounterPlugin{},
}

// KVPlugin is the go-plugin glue for KV over both protocols.
type KVPlugin struct {
	Impl KV
}

// Server is the net/rpc server side.
func (p *KVPlugin) Server(*plugin.MuxBroker) (interface{}, error) {
	return &KVRPCServer{Impl: p.Impl}, nil
}

// Client is the net/rpc client side.
func (p *KVPlugin) Client(_ *plugin.MuxBroker, c *rpc.Client) (interface{}, error) {
	return &KVRPCClient{client: c}, nil
}

// GRPCServer registers the gRPC server side.
func (p *KVPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterKVServer(s, &kvGRPCServer{Impl: p.Impl})
	return nil
}

// GRPCClient builds the gRPC client side.
func (p *KVPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &kvGRPCClient{client: proto.NewKVClient(c)}, nil
}

type kvGRPCClient struct{ client proto.KVClient }

func (c *kvGRPCClient) Put(key string, value []byte) error {
	_, err := c.client.Put(context.Background(), &proto.PutRequest{Key: key, Value: value})
	return err
}

func (c *kvGRPCClient) Get(key string) ([]byte, error) {
	resp, err := c.client.Get(context.Background(), &proto.GetRequest{Key: key})
	if err != nil {
		return nil, err
	}
	return resp.Value, nil
}

type kvGRPCServer struct{ Impl KV }

func (s *kvGRPCServer) Put(_ context.Context, req *proto.PutRequest) (*proto.Empty, error) {
	return &proto.Empty{}, s.Impl.Put(req.Key, req.Value)
}

func (s *kvGRPCServer) Get(_ context.Context, req *proto.GetRequest) (*proto.GetResponse, error) {
	v, err := s.Impl.Get(req.Key)
	return &proto.GetResponse{Value: v}, err
}

// KVRPCClient is the net/rpc client.
type KVRPCClient struct{ client *rpc.Client }

// PutArgs are net/rpc's arguments of Put.
type PutArgs struct {
	Key   string
	Value []byte
}

// Put stores a value.
func (c *KVRPCClient) Put(key string, value []byte) error {
	var empty struct{}
	return c.client.Call("Plugin.Put", &PutArgs{Key: key, Value: value}, &empty)
}

// Get reads a value.
func (c *KVRPCClient) Get(key string) ([]byte, error) {
	var v []byte
	err := c.client.Call("Plugin.Get", key, &v)
	return v, err
}

// KVRPCServer is the net/rpc server.
type KVRPCServer struct{ Impl KV }

// Put stores a value.
func (s *KVRPCServer) Put(args *PutArgs, _ *struct{}) error { return s.Impl.Put(args.Key, args.Value) }

// Get reads a value.
func (s *KVRPCServer) Get(key string, resp *[]byte) error {
	v, err := s.Impl.Get(key)
	*resp = v
	return err
}

// CounterPlugin is the go-plugin glue for Counter (gRPC with the broker).
type CounterPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Counter
}

// GRPCServer registers the gRPC server side.
func (p *CounterPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterCounterServer(s, &counterGRPCServer{Impl: p.Impl, broker: broker})
	return nil
}

// GRPCClient builds the gRPC client side.
func (p *CounterPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &counterGRPCClient{client: proto.NewCounterClient(c), broker: broker}, nil
}

type counterGRPCClient struct {
	broker *plugin.GRPCBroker
	client proto.CounterClient
}

// Put serves the AddHelper on a new broker id for this call, as go-plugin's bidirectional
// example does, and stops it when the call returns.
func (c *counterGRPCClient) Put(key string, value int64, a AddHelper) error {
	var s *grpc.Server
	serverFunc := func(opts []grpc.ServerOption) *grpc.Server {
		s = grpc.NewServer(opts...)
		proto.RegisterAddHelperServer(s, &addHelperGRPCServer{Impl: a})
		return s
	}
	id := c.broker.NextId()
	go c.broker.AcceptAndServe(id, serverFunc)
	_, err := c.client.Put(context.Background(), &proto.CounterPutRequest{AddServer: id, Key: key, Value: value})
	if s != nil {
		s.Stop()
	}
	return err
}

func (c *counterGRPCClient) Get(key string) (int64, error) {
	resp, err := c.client.Get(context.Background(), &proto.GetRequest{Key: key})
	if err != nil {
		return 0, err
	}
	return resp.Value, nil
}

type counterGRPCServer struct {
	broker *plugin.GRPCBroker
	Impl   Counter
}

func (s *counterGRPCServer) Put(_ context.Context, req *proto.CounterPutRequest) (*proto.Empty, error) {
	conn, err := s.broker.Dial(req.AddServer)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	helper := &addHelperGRPCClient{client: proto.NewAddHelperClient(conn)}
	return &proto.Empty{}, s.Impl.Put(req.Key, req.Value, helper)
}

func (s *counterGRPCServer) Get(_ context.Context, req *proto.GetRequest) (*proto.CounterGetResponse, error) {
	v, err := s.Impl.Get(req.Key)
	return &proto.CounterGetResponse{Value: v}, err
}

type addHelperGRPCClient struct{ client proto.AddHelperClient }

func (c *addHelperGRPCClient) Sum(a, b int64) (int64, error) {
	resp, err := c.client.Sum(context.Background(), &proto.SumRequest{A: a, B: b})
	if err != nil {
		return 0, err
	}
	return resp.R, nil
}

type addHelperGRPCServer struct{ Impl AddHelper }

func (s *addHelperGRPCServer) Sum(_ context.Context, req *proto.SumRequest) (*proto.SumResponse, error) {
	r, err := s.Impl.Sum(req.A, req.B)
	return &proto.SumResponse{R: r}, err
}
