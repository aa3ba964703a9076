package classifier

import (
	"container/list"
	"sync"
)

// pixelCache shares the decoded pixels of a processed PNG between the envs
// of one classifier process: prod, staging and canary each classify the
// same image, and with references in the split events (no inline pixels)
// each would otherwise read and decode the same PNG. Loads of one key are
// made once (the others wait for it); failures are not kept. It holds at
// most cap images (224x224 RGB, 150 KB each), oldest out first: an env
// that lags further behind than that reads the store again.
type pixelCache struct {
	mu      sync.Mutex
	cap     int
	entries map[string]*list.Element
	order   *list.List // of *pixelEntry, newest at the front
}

type pixelEntry struct {
	key   string
	ready chan struct{}
	rgb   []byte
	err   error
}

func newPixelCache(capacity int) *pixelCache {
	return &pixelCache{cap: max(capacity, 1), entries: map[string]*list.Element{}, order: list.New()}
}

// get returns key's pixels, calling load once for concurrent and later
// callers while the entry is kept.
func (c *pixelCache) get(key string, load func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*pixelEntry)
		c.mu.Unlock()
		<-e.ready
		if e.err == nil {
			return e.rgb, nil
		}
		return load() // the first load failed: this caller tries itself
	}
	e := &pixelEntry{key: key, ready: make(chan struct{})}
	c.entries[key] = c.order.PushFront(e)
	for c.order.Len() > c.cap {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.entries, old.Value.(*pixelEntry).key)
	}
	c.mu.Unlock()
	e.rgb, e.err = load()
	close(e.ready)
	if e.err != nil {
		c.mu.Lock()
		if el, ok := c.entries[key]; ok && el.Value == e {
			c.order.Remove(el)
			delete(c.entries, key)
		}
		c.mu.Unlock()
	}
	return e.rgb, e.err
}

// len is the number of entries kept (for tests).
func (c *pixelCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
