// Command remotedialer-hub is the peer of bench/tunnel/run.sh: a cluster proxy built the way
// Rancher's is, on github.com/rancher/remotedialer.
//
//	remotedialer-hub hub   -listen ADDR -cert F -key F -client-ca F -tokens F -agent-token T \
//	                       -allow GROUP=CLUSTERGLOB... -audit F
//	remotedialer-hub agent -hub wss://ADDR/v3/connect -hub-ca F -cluster ID -agent-token T \
//	                       -apiserver https://HOST:PORT -apiserver-ca F -token-file F
//
// Hub: one TLS listener (HTTP/2 and HTTP/1.1). Agents connect to /v3/connect (a WebSocket,
// remotedialer's session), sending the shared registration token and their cluster's API
// endpoint, CA and ServiceAccount token (as Rancher's agent sends its tunnel params). Users
// call /k8s/clusters/<id>/<Kubernetes path>: authenticated by client certificate (CN user,
// O groups) or bearer token (token file: token,user,uid,"group1,group2"), authorized by
// -allow rules, one audit line per request (buffered, flushed every 20 ms), then an
// httputil.ReverseProxy whose Transport dials through Server.Dialer(cluster), with the
// cluster's ServiceAccount token and Impersonate-User/Group set by the hub. Users'
// Authorization and Impersonate-* headers never pass. The transport keeps connections
// alive (HTTP/1.1 to the API server, as Rancher's remote cluster transport: a plain
// http.Transport with DialContext and TLS config set); /k8s/clusters-h2/<id>/ is the same
// with HTTP/2 to the API server.
//
// Agent: remotedialer.ClientConnect in a loop; it only lets the hub dial its API server.
package main

import (
	"bufio"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rancher/remotedialer"
	"github.com/sirupsen/logrus"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: remotedialer-hub hub|agent [flags]")
	}
	logrus.SetLevel(logrus.WarnLevel)
	switch os.Args[1] {
	case "hub":
		hubMain(os.Args[2:])
	case "agent":
		agentMain(os.Args[2:])
	default:
		log.Fatalf("unknown mode %q", os.Args[1])
	}
}

// params is what an agent registers: its cluster's API endpoint, CA and token.
type params struct {
	Cluster string `json:"cluster"`
	Address string `json:"address"`
	CACert  string `json:"caCert"`
	Token   string `json:"token"`
}

const (
	hdrToken  = "X-API-Tunnel-Token"
	hdrParams = "X-API-Tunnel-Params"
)

type user struct {
	name   string
	uid    string
	groups []string
}

type allowRule struct{ group, clusters string }

type cluster struct {
	p      params
	url    *url.URL
	h1, h2 http.RoundTripper
}

type hub struct {
	rd         *remotedialer.Server
	agentToken string
	tokens     map[string]user
	allow      []allowRule
	audit      *auditLog

	mu       sync.RWMutex
	clusters map[string]*cluster
}

func hubMain(args []string) {
	fs := flag.NewFlagSet("hub", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "users' and agents' TLS listener")
	certF := fs.String("cert", "", "server certificate (PEM)")
	keyF := fs.String("key", "", "server key (PEM)")
	clientCA := fs.String("client-ca", "", "CA of users' client certificates")
	tokensF := fs.String("tokens", "", "token file: token,user,uid,\"groups\"")
	agentToken := fs.String("agent-token", "", "agents' registration token")
	auditF := fs.String("audit", "", "audit log file")
	var allow multiFlag
	fs.Var(&allow, "allow", "GROUP=CLUSTERGLOB: members of GROUP may use matching clusters (repeatable)")
	_ = fs.Parse(args)

	h := &hub{agentToken: *agentToken, tokens: map[string]user{}, clusters: map[string]*cluster{}}
	for _, a := range allow {
		g, c, ok := strings.Cut(a, "=")
		if !ok {
			log.Fatalf("-allow %q: want GROUP=CLUSTERGLOB", a)
		}
		h.allow = append(h.allow, allowRule{g, c})
	}
	if *tokensF != "" {
		if err := h.loadTokens(*tokensF); err != nil {
			log.Fatal(err)
		}
	}
	var err error
	if h.audit, err = openAudit(*auditF); err != nil {
		log.Fatal(err)
	}
	h.rd = remotedialer.New(h.authorizeAgent, remotedialer.DefaultErrorWriter)

	cert, err := tls.LoadX509KeyPair(*certF, *keyF)
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	if *clientCA != "" {
		pem, err := os.ReadFile(*clientCA)
		if err != nil {
			log.Fatal(err)
		}
		pool.AppendCertsFromPEM(pem)
	}
	mux := http.NewServeMux()
	mux.Handle("/v3/connect", h.rd)
	mux.HandleFunc("/k8s/clusters/", func(w http.ResponseWriter, r *http.Request) { h.proxy(w, r, "/k8s/clusters/", false) })
	mux.HandleFunc("/k8s/clusters-h2/", func(w http.ResponseWriter, r *http.Request) { h.proxy(w, r, "/k8s/clusters-h2/", true) })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	srv := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS12,
		},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "listening on https://%s\n", ln.Addr())
	log.Fatal(srv.ServeTLS(ln, "", ""))
}

func (h *hub) loadTokens(f string) error {
	fh, err := os.Open(f)
	if err != nil {
		return err
	}
	defer fh.Close()
	r := csv.NewReader(fh)
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		return fmt.Errorf("%s: %w", f, err)
	}
	for _, rec := range recs {
		if len(rec) < 3 {
			return fmt.Errorf("%s: want token,user,uid[,groups]", f)
		}
		u := user{name: rec[1], uid: rec[2]}
		if len(rec) > 3 && rec[3] != "" {
			u.groups = strings.Split(rec[3], ",")
		}
		h.tokens[rec[0]] = u
	}
	return nil
}

// authorizeAgent is remotedialer's Authorizer: the registration token, then the agent's params.
func (h *hub) authorizeAgent(req *http.Request) (string, bool, error) {
	if subtle.ConstantTimeCompare([]byte(req.Header.Get(hdrToken)), []byte(h.agentToken)) != 1 {
		return "", false, nil
	}
	raw, err := base64.StdEncoding.DecodeString(req.Header.Get(hdrParams))
	if err != nil {
		return "", false, fmt.Errorf("tunnel params: %w", err)
	}
	var p params
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", false, fmt.Errorf("tunnel params: %w", err)
	}
	u, err := url.Parse(p.Address)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || p.Cluster == "" {
		return "", false, fmt.Errorf("tunnel params: bad cluster or address")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.clusters[p.Cluster]; ok && c.p == p {
		return p.Cluster, true, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(p.CACert)) && u.Scheme == "https" {
		return "", false, fmt.Errorf("tunnel params: no CA certificate")
	}
	dial := h.rd.Dialer(p.Cluster)
	mk := func(h2 bool) *http.Transport {
		return &http.Transport{
			DialContext:         func(ctx context.Context, network, addr string) (net.Conn, error) { return dial(ctx, network, addr) },
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2:   h2,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
		}
	}
	h.clusters[p.Cluster] = &cluster{p: p, url: u, h1: mk(false), h2: mk(true)}
	return p.Cluster, true, nil
}

// authenticate: a verified client certificate, else a bearer token.
func (h *hub) authenticate(r *http.Request) (user, bool) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		c := r.TLS.VerifiedChains[0][0]
		return user{name: c.Subject.CommonName, groups: c.Subject.Organization}, c.Subject.CommonName != ""
	}
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		u, ok := h.tokens[t]
		return u, ok
	}
	return user{}, false
}

func (h *hub) authorized(u user, clusterID string) bool {
	for _, a := range h.allow {
		for _, g := range u.groups {
			if g == a.group {
				if ok, _ := path.Match(a.clusters, clusterID); ok {
					return true
				}
			}
		}
	}
	return false
}

func (h *hub) proxy(w http.ResponseWriter, r *http.Request, prefix string, h2 bool) {
	start := time.Now()
	rec := &statusWriter{ResponseWriter: w, code: 200}
	rest := strings.TrimPrefix(r.URL.Path, prefix)
	clusterID, apiPath, _ := strings.Cut(rest, "/")
	u, authed := h.authenticate(r)
	defer func() { h.audit.log(start, u.name, r, clusterID, rec.code) }()
	if !authed {
		http.Error(rec, "unauthorized", http.StatusUnauthorized)
		return
	}
	if !h.authorized(u, clusterID) {
		http.Error(rec, "forbidden", http.StatusForbidden)
		return
	}
	h.mu.RLock()
	c := h.clusters[clusterID]
	h.mu.RUnlock()
	if c == nil || !h.rd.HasSession(clusterID) {
		http.Error(rec, "cluster unavailable", http.StatusServiceUnavailable)
		return
	}
	tr := c.h1
	if h2 {
		tr = c.h2
	}
	rp := &httputil.ReverseProxy{
		Transport:     tr,
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0),
		Rewrite: func(pr *httputil.ProxyRequest) {
			out := pr.Out
			out.URL.Scheme = c.url.Scheme
			out.URL.Host = c.url.Host
			out.URL.Path = "/" + apiPath
			out.URL.RawPath = ""
			out.Host = c.url.Host
			for k := range out.Header {
				if strings.HasPrefix(strings.ToLower(k), "impersonate-") {
					out.Header.Del(k)
				}
			}
			out.Header.Set("Authorization", "Bearer "+c.p.Token)
			out.Header.Set("Impersonate-User", u.name)
			for _, g := range u.groups {
				out.Header.Add("Impersonate-Group", g)
			}
			if u.uid != "" {
				out.Header.Set("Impersonate-Uid", u.uid)
			}
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "bad gateway", http.StatusBadGateway)
		},
	}
	rp.ServeHTTP(rec, r)
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(c int) { s.code = c; s.ResponseWriter.WriteHeader(c) }

// Unwrap lets http.ResponseController reach Flush and Hijack (upgrades, watches).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// auditLog: one JSON line per request into a buffer, written out every 20 ms.
type auditLog struct {
	mu  sync.Mutex
	w   *bufio.Writer
	seq atomic.Uint64
}

func openAudit(f string) (*auditLog, error) {
	var out io.Writer = io.Discard
	if f != "" {
		fh, err := os.OpenFile(f, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		out = fh
	}
	a := &auditLog{w: bufio.NewWriterSize(out, 256<<10)}
	go func() {
		for range time.Tick(20 * time.Millisecond) {
			a.mu.Lock()
			_ = a.w.Flush()
			a.mu.Unlock()
		}
	}()
	return a, nil
}

type auditEvent struct {
	Time    string `json:"time"`
	ID      uint64 `json:"auditID"`
	User    string `json:"user"`
	Verb    string `json:"method"`
	Cluster string `json:"cluster"`
	URI     string `json:"requestURI"`
	Code    int    `json:"code"`
	Micros  int64  `json:"latencyMicros"`
}

func (a *auditLog) log(start time.Time, userName string, r *http.Request, clusterID string, code int) {
	b, err := json.Marshal(auditEvent{
		Time: start.UTC().Format(time.RFC3339Nano), ID: a.seq.Add(1), User: userName, Verb: r.Method,
		Cluster: clusterID, URI: r.URL.RequestURI(), Code: code, Micros: time.Since(start).Microseconds(),
	})
	if err != nil {
		return
	}
	a.mu.Lock()
	_, _ = a.w.Write(b)
	_ = a.w.WriteByte('\n')
	a.mu.Unlock()
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func agentMain(args []string) {
	fs := flag.NewFlagSet("agent", flag.ExitOnError)
	hubURL := fs.String("hub", "", "wss://HUB/v3/connect")
	hubCA := fs.String("hub-ca", "", "CA of the hub's certificate")
	clusterID := fs.String("cluster", "", "this cluster's ID")
	agentToken := fs.String("agent-token", "", "registration token")
	apiserver := fs.String("apiserver", "", "https://HOST:PORT of the API server")
	apiCA := fs.String("apiserver-ca", "", "CA of the API server")
	tokenFile := fs.String("token-file", "", "the agent's ServiceAccount token")
	_ = fs.Parse(args)

	var caPEM []byte
	if *apiCA != "" {
		var err error
		if caPEM, err = os.ReadFile(*apiCA); err != nil {
			log.Fatal(err)
		}
	}
	tok, err := os.ReadFile(*tokenFile)
	if err != nil {
		log.Fatal(err)
	}
	u, err := url.Parse(*apiserver)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		log.Fatalf("-apiserver %q: want https://HOST:PORT (http:// for a plain test server)", *apiserver)
	}
	raw, _ := json.Marshal(params{Cluster: *clusterID, Address: *apiserver, CACert: string(caPEM), Token: strings.TrimSpace(string(tok))})
	headers := http.Header{}
	headers.Set(hdrToken, *agentToken)
	headers.Set(hdrParams, base64.StdEncoding.EncodeToString(raw))
	hubPEM, err := os.ReadFile(*hubCA)
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(hubPEM)
	dialer := &websocket.Dialer{
		TLSClientConfig:  &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		HandshakeTimeout: remotedialer.HandshakeTimeOut,
	}
	target := u.Host
	allow := func(proto, address string) bool { return proto == "tcp" && address == target }
	ctx := context.Background()
	for {
		err := remotedialer.ClientConnect(ctx, *hubURL, headers, dialer, allow, nil)
		if errors.Is(err, context.Canceled) {
			return
		}
	}
}
