package policy

import (
	"fmt"
	"testing"
)

func TestSourcesKeyIsStable(t *testing.T) {
	src := Sources{OrgParent: map[string]string{}, Data: map[string]any{"gatehouse": map[string]any{"orgs": map[string]any{}}}}
	for i := range 20 {
		src.OrgParent[fmt.Sprintf("org_%d", i)] = ""
		src.Data["gatehouse"].(map[string]any)["orgs"].(map[string]any)[fmt.Sprintf("o%d", i)] = map[string]any{"a": "b"}
	}
	k := src.Key()
	for range 20 {
		if src.Key() != k {
			t.Fatal("the same sources give different keys: every reload would recompile")
		}
	}
}
