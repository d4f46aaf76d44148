// The load generator in Go: the same spec, semantics and result as ../loadgen.py (read its docstring),
// at a fraction of the CPU per request. Python's grpc.aio client spends a few hundred microseconds per
// call, more than the servers it measures, so the benchmark builds and runs this one when `go` is
// installed and falls back to loadgen.py otherwise.
//
//	loadgen SPEC.json > result.json     (SPEC "-": the spec on stdin)
//
// HTTP/1.1: one keep-alive TCP connection per client, the pre-encoded request written as-is, the answer
// read by Content-Length or chunked. gRPC: the pre-serialized ModelInferRequest sent through grpc-go
// with a codec that passes bytes through, so no generated code is needed. Clients are goroutines on
// one OS thread by default (`threads`), so the generator never takes more than one core from the server.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

const grpcInfer = "/inference.GRPCInferenceService/ModelInfer"

type spec struct {
	Mode           string  `json:"mode"`
	Port           int     `json:"port"`
	RequestB64     string  `json:"request_b64"`
	GrpcRequestB64 string  `json:"grpc_request_b64"`
	Connections    int     `json:"connections"`
	StartAt        float64 `json:"start_at"`
	WarmupS        float64 `json:"warmup_s"`
	DurationS      float64 `json:"duration_s"`
	RetryAfterCapS float64 `json:"retry_after_cap_s"`
	Probe          bool    `json:"probe"`
	Threads        int     `json:"threads"`
	GrpcChannels   int     `json:"grpc_channels"`
}

type sample map[string]any

// tally is one client's count; clients never share one, so nothing is locked while measuring.
type tally struct {
	latencies []float64
	rejected  int
	errors    int
	samples   map[string]sample
}

// clock maps Go's monotonic time to CLOCK_MONOTONIC seconds, the parent's time.monotonic().
type clock struct {
	base     time.Time
	baseMono float64
}

func newClock() clock {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return clock{time.Now(), float64(ts.Sec) + float64(ts.Nsec)/1e9}
}

func (c clock) at(mono float64) time.Time {
	return c.base.Add(time.Duration((mono - c.baseMono) * float64(time.Second)))
}

type window struct{ t0, t1 time.Time }

func (t *tally) record(w window, started, done time.Time, code int, s func() sample) {
	if !done.Before(w.t0) && !done.After(w.t1) {
		switch {
		case code == 200:
			t.latencies = append(t.latencies, done.Sub(started).Seconds())
		case code == 429 || code == 503:
			t.rejected++
		default:
			t.errors++
		}
	}
	key := "error"
	if code == 200 {
		key = "ok"
	} else if code == 429 || code == 503 {
		key = "rejected"
	}
	if _, seen := t.samples[key]; !seen && s != nil {
		t.samples[key] = s()
	}
}

func (t *tally) fail(w window, now time.Time, message string) {
	if !now.Before(w.t0) && !now.After(w.t1) {
		t.errors++
	}
	if _, seen := t.samples["error"]; !seen {
		if len(message) > 300 {
			message = message[:300]
		}
		t.samples["error"] = sample{"status": 0, "error": message}
	}
}

// --- HTTP/1.1 ----------------------------------------------------------------------------------------

type httpConn struct {
	conn   net.Conn
	reader *bufio.Reader
	body   []byte
}

type answer struct {
	status     int
	head       []byte // only kept when asked for
	body       []byte
	retryAfter float64
}

func dial(port int) (*httpConn, error) {
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	return &httpConn{conn: c, reader: bufio.NewReaderSize(c, 64<<10)}, nil
}

func headerValue(line []byte, name string) ([]byte, bool) {
	if len(line) <= len(name) || line[len(name)] != ':' || !bytes.EqualFold(line[:len(name)], []byte(name)) {
		return nil, false
	}
	return bytes.TrimSpace(line[len(name)+1:]), true
}

// roundTrip writes the request and reads one whole answer; keepHead copies the head for a sample.
func (h *httpConn) roundTrip(request []byte, keepHead bool) (answer, error) {
	var a answer
	if _, err := h.conn.Write(request); err != nil {
		return a, err
	}
	length, chunked := -1, false
	var head bytes.Buffer
	for first := true; ; first = false {
		line, err := h.reader.ReadSlice('\n')
		if err != nil {
			return a, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if keepHead {
			head.Write(line)
			head.WriteString("\r\n")
		}
		if first {
			if len(line) < 12 {
				return a, fmt.Errorf("bad status line %q", line)
			}
			a.status, _ = strconv.Atoi(string(line[9:12]))
			continue
		}
		if len(line) == 0 {
			break
		}
		if v, ok := headerValue(line, "content-length"); ok {
			length, _ = strconv.Atoi(string(v))
		} else if v, ok := headerValue(line, "transfer-encoding"); ok {
			chunked = bytes.EqualFold(v, []byte("chunked"))
		} else if v, ok := headerValue(line, "retry-after"); ok {
			a.retryAfter, _ = strconv.ParseFloat(string(v), 64)
		}
	}
	a.head = bytes.ToLower(bytes.TrimRight(head.Bytes(), "\r\n"))
	h.body = h.body[:0]
	switch {
	case length >= 0:
		if cap(h.body) < length {
			h.body = make([]byte, length)
		}
		h.body = h.body[:length]
		if _, err := io.ReadFull(h.reader, h.body); err != nil {
			return a, err
		}
	case chunked:
		for {
			line, err := h.reader.ReadSlice('\n')
			if err != nil {
				return a, err
			}
			size, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.SplitN(line, []byte(";"), 2)[0])), 16, 64)
			if err != nil {
				return a, err
			}
			if size == 0 {
				for { // trailers, then the empty line
					line, err := h.reader.ReadSlice('\n')
					if err != nil {
						return a, err
					}
					if len(bytes.TrimRight(line, "\r\n")) == 0 {
						break
					}
				}
				break
			}
			start := len(h.body)
			h.body = append(h.body, make([]byte, size+2)...)
			if _, err := io.ReadFull(h.reader, h.body[start:]); err != nil {
				return a, err
			}
			h.body = h.body[:start+int(size)]
		}
	}
	a.body = h.body
	return a, nil
}

func httpSample(a answer) sample {
	return sample{"status": a.status, "head": string(a.head), "body_b64": base64.StdEncoding.EncodeToString(a.body)}
}

func httpClient(s spec, w window, request []byte, conn *httpConn, t *tally) {
	capS := s.RetryAfterCapS
	deadlineSet := map[*httpConn]bool{}
	for time.Now().Before(w.t1) {
		if conn == nil {
			c, err := dial(s.Port)
			if err != nil {
				t.fail(w, time.Now(), "connect: "+err.Error())
				time.Sleep(50 * time.Millisecond)
				continue
			}
			conn = c
		}
		if !deadlineSet[conn] {
			conn.conn.SetDeadline(w.t1) // a request still open when the window closes is abandoned
			deadlineSet[conn] = true
		}
		started := time.Now()
		a, err := conn.roundTrip(request, len(t.samples) < 3) // heads are only copied while samples are missing
		done := time.Now()
		if err != nil {
			if done.Before(w.t1) {
				t.fail(w, done, "request: "+err.Error())
			}
			conn.conn.Close()
			conn = nil
			continue
		}
		t.record(w, started, done, a.status, func() sample { return httpSample(a) })
		if (a.status == 429 || a.status == 503) && a.retryAfter > 0 {
			delay := math.Min(a.retryAfter, capS)
			if until := time.Until(w.t1); time.Duration(delay*float64(time.Second)) > until {
				break
			}
			time.Sleep(time.Duration(delay * float64(time.Second)))
		}
	}
	if conn != nil {
		conn.conn.Close()
	}
}

// --- gRPC --------------------------------------------------------------------------------------------

// rawCodec sends and receives message bytes as they are: requests are serialized once by the parent.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

func grpcConn(port int) (*grpc.ClientConn, error) {
	return grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallRecvMsgSize(64<<20),
			grpc.MaxCallSendMsgSize(64<<20)))
}

func grpcAnswer(err error) (int, sample) {
	st := status.Convert(err)
	code := 500
	if st.Code() == codes.ResourceExhausted {
		code = 503
	}
	message := fmt.Sprintf("%s: %s", st.Code(), st.Message())
	if len(message) > 300 {
		message = message[:300]
	}
	return code, sample{"status": code, "error": message}
}

func grpcClient(ctx context.Context, w window, conn *grpc.ClientConn, request []byte, t *tally) {
	for time.Now().Before(w.t1) {
		var response []byte
		started := time.Now()
		err := conn.Invoke(ctx, grpcInfer, &request, &response)
		done := time.Now()
		if err != nil {
			if done.After(w.t1) {
				return
			}
			code, s := grpcAnswer(err)
			t.record(w, started, done, code, func() sample { return s })
			if code == 500 {
				time.Sleep(10 * time.Millisecond) // a server that refuses must not be spun against
			}
			continue
		}
		t.record(w, started, done, 200, func() sample {
			return sample{"status": 200, "body_b64": base64.StdEncoding.EncodeToString(response)}
		})
	}
}

// --- the run -----------------------------------------------------------------------------------------

func cpuSeconds() float64 {
	var u syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	return float64(u.Utime.Sec+u.Stime.Sec) + float64(u.Utime.Usec+u.Stime.Usec)/1e6
}

func run(s spec) (map[string]any, error) {
	c := newClock()
	startAt := c.at(s.StartAt)
	w := window{c.at(s.StartAt + s.WarmupS), c.at(s.StartAt + s.WarmupS + s.DurationS)}
	tallies := make([]*tally, s.Connections)
	for i := range tallies {
		tallies[i] = &tally{samples: map[string]sample{}}
	}
	var clients []func()
	var closers []func()
	if s.Mode == "grpc" {
		request, err := base64.StdEncoding.DecodeString(s.GrpcRequestB64)
		if err != nil {
			return nil, err
		}
		channels := max(1, s.GrpcChannels)
		conns := make([]*grpc.ClientConn, channels)
		for i := range conns {
			if conns[i], err = grpcConn(s.Port); err != nil {
				return nil, err
			}
			conns[i].Connect()
			closers = append(closers, func() { conns[i].Close() })
		}
		ctx, cancel := context.WithDeadline(context.Background(), w.t1)
		closers = append(closers, cancel)
		for i, t := range tallies {
			clients = append(clients, func() { grpcClient(ctx, w, conns[i%channels], request, t) })
		}
	} else {
		request, err := base64.StdEncoding.DecodeString(s.RequestB64)
		if err != nil {
			return nil, err
		}
		conns := make([]*httpConn, s.Connections)
		var wg sync.WaitGroup
		gate := make(chan struct{}, 64) // a listen backlog is finite
		for i := range conns {
			wg.Add(1)
			gate <- struct{}{}
			go func() {
				defer wg.Done()
				conns[i], _ = dial(s.Port) // a failed one is retried by its client
				<-gate
			}()
		}
		wg.Wait()
		for i, t := range tallies {
			clients = append(clients, func() { httpClient(s, w, request, conns[i], t) })
		}
	}
	late := time.Since(startAt).Seconds()
	time.Sleep(time.Until(startAt))
	var wg sync.WaitGroup
	for _, client := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); client() }()
	}
	time.Sleep(time.Until(w.t0))
	cpu0 := cpuSeconds()
	time.Sleep(time.Until(w.t1))
	cpu1 := cpuSeconds()
	wg.Wait()
	for _, close := range closers {
		close()
	}
	return merge(tallies, cpu1-cpu0, math.Max(late, 0)), nil
}

func merge(tallies []*tally, cpu, late float64) map[string]any {
	var all []byte
	rejected, errs := 0, 0
	samples := map[string]sample{}
	for _, t := range tallies {
		for _, l := range t.latencies {
			all = binary.LittleEndian.AppendUint64(all, math.Float64bits(l))
		}
		rejected += t.rejected
		errs += t.errors
		for k, v := range t.samples {
			if _, seen := samples[k]; !seen {
				samples[k] = v
			}
		}
	}
	return map[string]any{
		"latencies_b64": base64.StdEncoding.EncodeToString(all),
		"rejected":      rejected, "errors": errs, "client_cpu_s": cpu,
		"late_start_s": math.Round(late*1000) / 1000, "samples": samples,
	}
}

func probe(s spec) sample {
	if s.Mode == "grpc" {
		request, _ := base64.StdEncoding.DecodeString(s.GrpcRequestB64)
		conn, err := grpcConn(s.Port)
		if err != nil {
			return sample{"status": 0, "error": err.Error()}
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var response []byte
		if err := conn.Invoke(ctx, grpcInfer, &request, &response); err != nil {
			_, sm := grpcAnswer(err)
			sm["status"] = 0
			return sm
		}
		return sample{"status": 200, "body_b64": base64.StdEncoding.EncodeToString(response)}
	}
	request, _ := base64.StdEncoding.DecodeString(s.RequestB64)
	conn, err := dial(s.Port)
	if err != nil {
		return sample{"status": 0, "error": err.Error()}
	}
	defer conn.conn.Close()
	conn.conn.SetDeadline(time.Now().Add(30 * time.Second))
	a, err := conn.roundTrip(request, true)
	if err != nil {
		return sample{"status": 0, "error": err.Error()}
	}
	return httpSample(a)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen SPEC.json (- for stdin)")
		os.Exit(2)
	}
	var raw []byte
	var err error
	if os.Args[1] == "-" {
		raw, err = io.ReadAll(os.Stdin)
	} else {
		raw, err = os.ReadFile(os.Args[1])
	}
	var s spec
	if err == nil {
		err = json.Unmarshal(raw, &s)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "spec:", err)
		os.Exit(2)
	}
	runtime.GOMAXPROCS(max(1, s.Threads))
	var out any
	if s.Probe {
		out = probe(s)
	} else if out, err = run(s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil && !errors.Is(err, syscall.EPIPE) {
		os.Exit(1)
	}
}
