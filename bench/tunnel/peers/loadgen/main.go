// Command loadgen is the one load generator of bench/tunnel/run.sh's kube-apiserver part,
// used for every path (direct, Causeway, remotedialer-hub, frp, rathole), so that every row
// pays the same client: HTTP/2 over TLS where the path offers it, HTTP/1.1 (TLS or plain)
// where it does not (frp's HTTP vhost).
//
//	loadgen latency|throughput -url URL [-ca F] [-cert F -key F | -token-file F | -basic U:P]
//	        [-header 'Name: value']... [-host H] [-h1] -c N -d SECS [-conns N]
//	loadgen watches -url URL ... -count N -hold SECS [-conns N]
//
// HTTP/2: -conns connections (default 4, at most -c), requests spread over them.
// HTTP/1.1: one connection per concurrent request (per watch). Prints one JSON object with
// the fields of tunnel_bench (requests, errors, rps, p50_us, p99_us, mib_per_s) and the
// generator's own CPU time (cpu_us). Bounded by -d (latency, throughput) and -count.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	if len(os.Args) < 2 {
		fail("usage: loadgen latency|throughput|watches [flags]")
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	rawURL := fs.String("url", "", "target URL")
	caF := fs.String("ca", "", "CA (PEM) of the server")
	certF := fs.String("cert", "", "client certificate (PEM)")
	keyF := fs.String("key", "", "client key (PEM)")
	tokenF := fs.String("token-file", "", "bearer token file")
	basic := fs.String("basic", "", "USER:PASSWORD for HTTP basic auth")
	host := fs.String("host", "", "Host header (default: the URL's)")
	h1 := fs.Bool("h1", false, "HTTP/1.1 only")
	conc := fs.Int("c", 1, "concurrent requests")
	dur := fs.Float64("d", 10, "seconds")
	conns := fs.Int("conns", 4, "HTTP/2 connections")
	count := fs.Int("count", 1000, "watches to open")
	hold := fs.Float64("hold", 5, "seconds to hold the watches")
	var hdrs headers
	fs.Var(&hdrs, "header", "'Name: value' (repeatable)")
	_ = fs.Parse(os.Args[2:])

	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if *caF != "" {
		pem, err := os.ReadFile(*caF)
		if err != nil {
			fail(err.Error())
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tlsConf.RootCAs = pool
	}
	if *certF != "" {
		c, err := tls.LoadX509KeyPair(*certF, *keyF)
		if err != nil {
			fail(err.Error())
		}
		tlsConf.Certificates = []tls.Certificate{c}
	}
	hv := http.Header{}
	for _, h := range hdrs {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			fail("-header " + h + ": want 'Name: value'")
		}
		hv.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if *tokenF != "" {
		t, err := os.ReadFile(*tokenF)
		if err != nil {
			fail(err.Error())
		}
		hv.Set("Authorization", "Bearer "+strings.TrimSpace(string(t)))
	}
	if *basic != "" {
		hv.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(*basic)))
	}

	// One transport per connection: HTTP/2 multiplexes on it; HTTP/1.1 gets one per worker.
	n := *conns
	if *h1 {
		n = *conc
		if mode == "watches" {
			n = *count
		}
	} else if mode != "watches" && n > *conc {
		n = *conc
	}
	if n < 1 {
		n = 1
	}
	clients := make([]*http.Client, n)
	for i := range clients {
		tr := &http.Transport{
			TLSClientConfig:     tlsConf.Clone(),
			ForceAttemptHTTP2:   !*h1,
			MaxConnsPerHost:     1,
			MaxIdleConnsPerHost: 1,
			DisableCompression:  true,
			IdleConnTimeout:     5 * time.Minute,
		}
		if *h1 {
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		clients[i] = &http.Client{Transport: tr}
	}
	get := func(ctx context.Context, c *http.Client) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, *rawURL, nil)
		if err != nil {
			return nil, err
		}
		for k, v := range hv {
			req.Header[k] = v
		}
		if *host != "" {
			req.Host = *host
		}
		return c.Do(req)
	}

	switch mode {
	case "latency", "throughput":
		deadline := time.Now().Add(time.Duration(*dur * float64(time.Second)))
		type result struct {
			lat         []time.Duration
			bytes, errs int64
		}
		res := make([]result, *conc)
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < *conc; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				c := clients[w%len(clients)]
				r := &res[w]
				for time.Now().Before(deadline) {
					t := time.Now()
					resp, err := get(context.Background(), c)
					if err != nil {
						r.errs++
						continue
					}
					nb, err := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode/100 != 2 {
						r.errs++
						continue
					}
					r.lat = append(r.lat, time.Since(t))
					r.bytes += nb
				}
			}(w)
		}
		wg.Wait()
		secs := time.Since(start).Seconds()
		if secs < *dur {
			secs = *dur
		}
		var lat []time.Duration
		var bytes, errs int64
		for _, r := range res {
			lat = append(lat, r.lat...)
			bytes += r.bytes
			errs += r.errs
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		out(map[string]any{
			"mode": mode, "concurrency": *conc, "requests": len(lat), "errors": errs,
			"rps": round1(float64(len(lat)) / secs), "p50_us": pct(lat, 0.50), "p99_us": pct(lat, 0.99),
			"mib_per_s": round1(float64(bytes) / secs / (1 << 20)), "cpu_us": cpuUs(),
		})
	case "watches":
		var held []*http.Response
		failed := 0
		for i := 0; i < *count; i++ {
			resp, err := get(context.Background(), clients[i%len(clients)])
			if err != nil || resp.StatusCode/100 != 2 {
				failed++
				if resp != nil {
					resp.Body.Close()
				}
				continue
			}
			held = append(held, resp)
		}
		out(map[string]any{"mode": "watches", "open": len(held), "failed": failed})
		time.Sleep(time.Duration(*hold * float64(time.Second)))
		for _, r := range held {
			r.Body.Close()
		}
	default:
		fail("unknown mode " + mode)
	}
}

func pct(sorted []time.Duration, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1)*p + 0.5)
	return sorted[i].Microseconds()
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

// cpuUs is this process's user+system CPU time so far, in µs.
func cpuUs() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return -1
	}
	return ru.Utime.Nano()/1000 + ru.Stime.Nano()/1000
}

func out(v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "loadgen:", msg)
	os.Exit(2)
}
