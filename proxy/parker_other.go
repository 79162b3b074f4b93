//go:build !linux

package proxy

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// parker is Linux-only (epoll); elsewhere every pump keeps its goroutine.
type parker struct{ parkedSet }

func newParker(prometheus.Gauge) (*parker, error) {
	return nil, errors.New("parking idle sessions needs epoll (Linux)")
}

func (p *parker) park(*frameReader, parkEntry) bool { return false }
func (p *parker) unpark(*frameReader)               {}
func (p *parker) stop()                             {}
