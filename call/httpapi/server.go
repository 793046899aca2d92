package httpapi

import (
	"net/http"
	"time"
)

// Server timeouts and limits set by NewServer.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 2 * time.Minute
	MaxHeaderBytes    = 16 << 10
)

// NewServer returns an http.Server for h on addr with every timeout set, so
// that slow or idle clients cannot hold connections (slowloris): a request's
// headers must arrive within ReadHeaderTimeout and its body within
// ReadTimeout, its answer must be written within WriteTimeout, idle
// keep-alive connections close after IdleTimeout, and headers are limited to
// MaxHeaderBytes (431 beyond). GET /v1/events streams lift the read deadline
// and renew the write deadline on each write, so they outlive these.
//
// Shutting down: call the API's Close as Shutdown begins (for instance
// with srv.RegisterOnShutdown), so that open event streams end and do not
// hold Shutdown up.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}
