package orkstate

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// ValidateDAG checks a compiled DAG: at most MaxTaskCount tasks, non-empty unique
// names within MaxNameLength, dependencies that name tasks of the DAG, no cycle,
// retries and timeouts within bounds, and valid JSON in params and signatures. The
// error names the offending task or field.
func ValidateDAG(tasks []TaskSpec) error {
	if len(tasks) > MaxTaskCount {
		return Invalid("tasks", len(tasks), fmt.Sprintf("at most %d tasks in a DAG", MaxTaskCount))
	}
	index := make(map[string]int, len(tasks))
	for i, t := range tasks {
		if strings.TrimSpace(t.Name) == "" {
			return Invalid("task name", t.Name, fmt.Sprintf("task %d has an empty name", i))
		}
		if err := validTaskFields(t.Name, t.ExecutorType, t.DependsOn, t.MaxRetries, t.TimeoutSeconds); err != nil {
			return err
		}
		if _, dup := index[t.Name]; dup {
			return Invalid("task name", t.Name, "duplicate task name")
		}
		index[t.Name] = i
		if err := ValidJSON("params", t.Params); err != nil {
			return err
		}
		if err := ValidJSON("signature", t.Signature); err != nil {
			return err
		}
		if err := validSpecLimits(t); err != nil {
			return err
		}
	}
	deps := make([][]string, len(tasks))
	for i, t := range tasks {
		for _, d := range t.DependsOn {
			if _, ok := index[d]; !ok {
				return Invalid("depends_on", d, fmt.Sprintf("task %q depends on unknown task", t.Name))
			}
		}
		deps[i] = t.DependsOn
	}
	names := make([]string, len(tasks))
	for i, t := range tasks {
		names[i] = t.Name
	}
	return checkAcyclic(names, deps, index)
}

// checkAcyclic runs Kahn's algorithm; what is left unsorted lies on or behind a cycle.
func checkAcyclic(names []string, deps [][]string, index map[string]int) error {
	unmet := make([]int, len(names))
	downstream := make([][]int, len(names))
	for i, ds := range deps {
		seen := map[string]bool{}
		for _, d := range ds {
			if seen[d] {
				continue
			}
			seen[d] = true
			unmet[i]++
			downstream[index[d]] = append(downstream[index[d]], i)
		}
	}
	queue := make([]int, 0, len(names))
	for i, n := range unmet {
		if n == 0 {
			queue = append(queue, i)
		}
	}
	for k := 0; k < len(queue); k++ {
		for _, j := range downstream[queue[k]] {
			if unmet[j]--; unmet[j] == 0 {
				queue = append(queue, j)
			}
		}
	}
	if len(queue) == len(names) {
		return nil
	}
	var stuck []string
	for i, n := range unmet {
		if n > 0 {
			stuck = append(stuck, names[i])
		}
	}
	sort.Strings(stuck)
	return Invalid("depends_on", strings.Join(stuck, ", "), "dependency cycle among these tasks")
}

// ContentHash is the snapshot key of a DAG: the SHA-256 of its canonical JSON.
// Params and signatures are canonicalised (keys sorted, spacing dropped, numbers
// kept as written), so a DAG read back from jsonb hashes like the one written.
func ContentHash(tasks []TaskSpec) (string, error) {
	normal := make([]TaskSpec, len(tasks))
	for i, t := range tasks {
		t.DependsOn = append([]string{}, t.DependsOn...)
		var err error
		if t.Params, err = canonicalJSON(t.Params); err != nil {
			return "", Invalid("params", nil, fmt.Sprintf("task %q: %v", t.Name, err))
		}
		if t.Signature, err = canonicalJSON(t.Signature); err != nil {
			return "", Invalid("signature", nil, fmt.Sprintf("task %q: %v", t.Name, err))
		}
		normal[i] = t
	}
	b, err := json.Marshal(normal)
	if err != nil {
		return "", fmt.Errorf("orkstate: hash DAG: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// RetryBackoff is Ork's delay before retrying after failed attempt n (1-based):
// 1 s for the first, then 2^(n-1) s, capped at 60 s.
func RetryBackoff(attempt int) time.Duration {
	if attempt <= 1 {
		return time.Second
	}
	if attempt > 7 {
		return 60 * time.Second
	}
	return min(time.Duration(1<<(attempt-1))*time.Second, 60*time.Second)
}

// canonicalJSON re-encodes a JSON value with sorted keys and no insignificant space.
func canonicalJSON(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 {
		return raw, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}
