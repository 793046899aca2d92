package fsm

import "strings"

// Path is one way through a lifecycle: the transitions a call takes, in
// order, from the initial state to a terminal one. Paths are what
// model-based tests run: every one of them, or a set that takes every
// transition at least once (Spec.Paths, Spec.CoveringPaths).
type Path []Transition

// States returns the states a call on the path enters, the initial state
// first: one more than the path has transitions.
func (p Path) States() []State {
	if len(p) == 0 {
		return nil
	}
	out := make([]State, 0, len(p)+1)
	out = append(out, p[0].From)
	for _, tr := range p {
		out = append(out, tr.To)
	}
	return out
}

// Triggers returns the path's triggers, in order.
func (p Path) Triggers() []Trigger {
	out := make([]Trigger, len(p))
	for i, tr := range p {
		out[i] = tr.Trigger
	}
	return out
}

// End returns the state the path ends in ("" for an empty path).
func (p Path) End() State {
	if len(p) == 0 {
		return ""
	}
	return p[len(p)-1].To
}

// String returns the path as states and triggers:
// "initiated -ring-> ringing -timeout-> missed".
func (p Path) String() string {
	if len(p) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(string(p[0].From))
	for _, tr := range p {
		b.WriteString(" -")
		b.WriteString(string(tr.Trigger))
		b.WriteString("-> ")
		b.WriteString(string(tr.To))
	}
	return b.String()
}

// live reports whether the transition can happen: every transition but a
// timeout whose duration is switched off.
func (s *Spec) live(tr Transition) bool {
	if tr.Trigger != Timeout {
		return true
	}
	_, _, ok := s.Timeout(tr.From)
	return ok
}

// exits returns the transitions that can happen from state index i, in
// table order (by trigger).
func (s *Spec) exits(i int) []Transition {
	var out []Transition
	for _, tr := range s.transitions {
		if s.index[tr.From] == i && s.live(tr) {
			out = append(out, tr)
		}
	}
	return out
}

// Paths returns every path from the initial state to a terminal state that
// enters no state twice, in a fixed order: depth first, each state's exits
// in table order (by trigger). A timeout that is switched off never fires,
// so no path takes it. The Popin outgoing lifecycle has 14 paths, from
// "initiated -busy-> busy" to "initiated -unavailable-> customer_unavailable".
//
// A path holds transitions, not inputs: a transition into a participant
// state (network_failure) is one path whatever the participant.
func (s *Spec) Paths() []Path {
	exits := make([][]Transition, len(s.states))
	for i := range s.states {
		exits[i] = s.exits(i)
	}
	var out []Path
	onPath := make([]bool, len(s.states))
	var walk func(i int, prefix Path)
	walk = func(i int, prefix Path) {
		if s.terminal[i] {
			out = append(out, append(Path(nil), prefix...))
			return
		}
		onPath[i] = true
		for _, tr := range exits[i] {
			if j := s.index[tr.To]; !onPath[j] {
				walk(j, append(prefix, tr))
			}
		}
		onPath[i] = false
	}
	walk(s.index[s.initial], nil)
	return out
}

// CoveringPaths returns a small set of paths that together take every
// transition that can happen at least once, each the shortest way: for each
// transition in table order not yet taken by a path already chosen, the
// shortest path from the initial state to the transition's source, the
// transition, then the shortest path from its target to a terminal state
// (ties go to the earlier transition in table order). Paths may enter a
// state twice when the lifecycle has cycles.
func (s *Spec) CoveringPaths() []Path {
	n := len(s.states)
	exits := make([][]Transition, n)
	for i := range s.states {
		exits[i] = s.exits(i)
	}

	// to[i]: the transition by which a breadth-first search from the
	// initial state first reached i.
	to := make([]*Transition, n)
	reached := make([]bool, n)
	ini := s.index[s.initial]
	reached[ini] = true
	for queue := []int{ini}; len(queue) > 0; queue = queue[1:] {
		for k := range exits[queue[0]] {
			tr := &exits[queue[0]][k]
			if j := s.index[tr.To]; !reached[j] {
				reached[j], to[j] = true, tr
				queue = append(queue, j)
			}
		}
	}
	prefix := func(i int) Path {
		var p Path
		for ; i != ini; i = s.index[to[i].From] {
			p = append(p, *to[i])
		}
		for l, r := 0, len(p)-1; l < r; l, r = l+1, r-1 {
			p[l], p[r] = p[r], p[l]
		}
		return p
	}

	// dist[i]: fewest transitions from i to a terminal state (-1: none),
	// by a breadth-first search backwards from the terminal states; step[i]:
	// the earliest exit in table order that starts such a shortest way.
	dist := make([]int, n)
	var queue []int
	for i := range dist {
		dist[i] = -1
		if s.terminal[i] {
			dist[i] = 0
			queue = append(queue, i)
		}
	}
	for ; len(queue) > 0; queue = queue[1:] {
		j := queue[0]
		for i := range n {
			if dist[i] >= 0 {
				continue
			}
			for _, tr := range exits[i] {
				if s.index[tr.To] == j {
					dist[i] = dist[j] + 1
					queue = append(queue, i)
					break
				}
			}
		}
	}
	step := make([]*Transition, n)
	for i := range n {
		for k := range exits[i] {
			if tr := &exits[i][k]; dist[i] > 0 && dist[s.index[tr.To]] == dist[i]-1 {
				step[i] = tr
				break
			}
		}
	}
	suffix := func(i int) Path {
		var p Path
		for ; !s.terminal[i]; i = s.index[step[i].To] {
			p = append(p, *step[i])
		}
		return p
	}

	type key struct {
		from    State
		trigger Trigger
	}
	taken := make(map[key]bool)
	var out []Path
	for _, tr := range s.transitions {
		from, into := s.index[tr.From], s.index[tr.To]
		if !s.live(tr) || !reached[from] || dist[into] < 0 || taken[key{tr.From, tr.Trigger}] {
			continue
		}
		p := append(append(prefix(from), tr), suffix(into)...)
		for _, t := range p {
			taken[key{t.From, t.Trigger}] = true
		}
		out = append(out, p)
	}
	return out
}
