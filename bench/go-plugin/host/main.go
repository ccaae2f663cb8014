// The go-plugin peer's host: runs one workload against the plugin built beside it and prints
// its raw repetitions as one JSON object on stdout, for tether-bench to summarise with the same
// statistics as its own rows (bench/src/go_plugin.rs).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"os/exec"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"tetherbench/shared"
)

type output struct {
	Workload string    `json:"workload"`
	Protocol string    `json:"protocol"`
	Unit     string    `json:"unit"`
	Work     float64   `json:"work,omitempty"`
	Wall     float64   `json:"wall,omitempty"`
	Values   []float64 `json:"values"`
}

type adder struct{}

func (adder) Sum(a, b int64) (int64, error) { return a + b, nil }

func newClient(path, protocol string) *plugin.Client {
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), "TETHER_BENCH_GO_PROTOCOL="+protocol)
	allowed := []plugin.Protocol{plugin.ProtocolGRPC}
	if protocol == "netrpc" {
		allowed = []plugin.Protocol{plugin.ProtocolNetRPC}
	}
	return plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  shared.Handshake,
		Plugins:          shared.PluginMap,
		Cmd:              cmd,
		AllowedProtocols: allowed,
		Logger:           hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: ioutil.Discard}),
	})
}

func dispense(c *plugin.Client, name string) (interface{}, error) {
	rpc, err := c.Client()
	if err != nil {
		return nil, err
	}
	return rpc.Dispense(name)
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go-plugin host: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	path := flag.String("plugin", "", "the go-plugin plugin binary")
	protocol := flag.String("protocol", "grpc", "grpc or netrpc")
	workload := flag.String("workload", "get_seq", "start, get_seq, tput, latency, put, get or callback")
	n := flag.Int("n", 1000, "timed repetitions")
	warmup := flag.Int("warmup", 100, "untimed repetitions first")
	size := flag.Int("size", 16, "value size in bytes for put and get")
	inflight := flag.Int("inflight", 64, "concurrent callers for tput")
	calls := flag.Int("calls", 20000, "calls per repetition for tput")
	flag.Parse()
	if *path == "" {
		fail("-plugin is required")
	}
	out := output{Workload: *workload, Protocol: *protocol}

	if *workload == "start" {
		out.Unit = "ms"
		for i := 0; i < *n+1; i++ {
			t := time.Now()
			c := newClient(*path, *protocol)
			raw, err := dispense(c, "kv")
			if err != nil {
				c.Kill()
				fail("start: %v", err)
			}
			if err := raw.(shared.KV).Put("k", []byte("0123456789abcdef")); err != nil {
				c.Kill()
				fail("first call: %v", err)
			}
			elapsed := time.Since(t)
			c.Kill()
			if i > 0 { // the first start also pays for loading the binary into the page cache
				out.Values = append(out.Values, float64(elapsed.Nanoseconds())/1e6)
			}
		}
		emit(out)
		return
	}

	c := newClient(*path, *protocol)
	defer c.Kill()
	switch *workload {
	case "get_seq", "tput", "latency", "put", "get":
		raw, err := dispense(c, "kv")
		if err != nil {
			fail("start: %v", err)
		}
		kv := raw.(shared.KV)
		value := make([]byte, *size)
		for i := range value {
			value[i] = byte(i)
		}
		if err := kv.Put("k", value); err != nil {
			fail("put: %v", err)
		}
		switch *workload {
		case "get_seq":
			out.Unit = "us"
			for i := 0; i < *warmup+*n; i++ {
				t := time.Now()
				if _, err := kv.Get("k"); err != nil {
					fail("get: %v", err)
				}
				if i >= *warmup {
					out.Values = append(out.Values, micros(time.Since(t)))
				}
			}
		case "tput":
			out.Unit = "s"
			out.Work = float64(*calls)
			for rep := 0; rep < *n+1; rep++ {
				t := time.Now()
				var wg sync.WaitGroup
				var failed error
				var once sync.Once
				per := *calls / *inflight
				for w := 0; w < *inflight; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for j := 0; j < per; j++ {
							if _, err := kv.Get("k"); err != nil {
								once.Do(func() { failed = err })
								return
							}
						}
					}()
				}
				wg.Wait()
				if failed != nil {
					fail("get in flight: %v", failed)
				}
				if rep > 0 {
					out.Values = append(out.Values, time.Since(t).Seconds()*float64(*calls)/float64(per**inflight))
				}
			}
		case "latency":
			// -inflight goroutines share -calls gets; each call's own time, and the wall time
			// of all of them (calls/s = calls / wall).
			out.Unit = "us"
			per := *calls / *inflight
			out.Work = float64(per * *inflight)
			for i := 0; i < *warmup; i++ {
				if _, err := kv.Get("k"); err != nil {
					fail("get: %v", err)
				}
			}
			samples := make([][]float64, *inflight)
			errs := make([]error, *inflight)
			var wg sync.WaitGroup
			t := time.Now()
			for w := 0; w < *inflight; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					mine := make([]float64, 0, per)
					for j := 0; j < per; j++ {
						c := time.Now()
						if _, err := kv.Get("k"); err != nil {
							errs[w] = err
							return
						}
						mine = append(mine, micros(time.Since(c)))
					}
					samples[w] = mine
				}(w)
			}
			wg.Wait()
			out.Wall = time.Since(t).Seconds()
			for w := range samples {
				if errs[w] != nil {
					fail("get in flight: %v", errs[w])
				}
				out.Values = append(out.Values, samples[w]...)
			}
		case "put", "get":
			out.Unit = "s"
			out.Work = float64(*size)
			for i := 0; i < *warmup+*n; i++ {
				t := time.Now()
				if *workload == "put" {
					err = kv.Put("big", value)
				} else {
					var got []byte
					got, err = kv.Get("k")
					if err == nil && len(got) != *size {
						err = fmt.Errorf("got %d bytes, want %d", len(got), *size)
					}
				}
				if err != nil {
					fail("%s: %v", *workload, err)
				}
				if i >= *warmup {
					out.Values = append(out.Values, time.Since(t).Seconds())
				}
			}
		}
	case "callback":
		raw, err := dispense(c, "counter")
		if err != nil {
			fail("start: %v", err)
		}
		counter := raw.(shared.Counter)
		out.Unit = "us"
		for i := 0; i < *warmup+*n; i++ {
			t := time.Now()
			if err := counter.Put("c", 1, adder{}); err != nil {
				fail("counter put: %v", err)
			}
			if i >= *warmup {
				out.Values = append(out.Values, micros(time.Since(t)))
			}
		}
		got, err := counter.Get("c")
		if err != nil || got != int64(*warmup+*n) {
			fail("counter get: %d, %v (want %d)", got, err, *warmup+*n)
		}
	default:
		fail("unknown workload %q", *workload)
	}
	emit(out)
}

func emit(out output) {
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("writing the result: %v", err)
	}
}
