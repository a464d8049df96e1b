package policy

import (
	"context"
	"testing"
)

func BenchmarkDecideTrivial(b *testing.B) {
	set, err := Compile(context.Background(), Sources{Platform: mod(`allow := true`)})
	if err != nil {
		b.Fatal(err)
	}
	r := NewRego(0, nil)
	r.Swap(set)
	in := alice()
	b.ReportAllocs()
	for b.Loop() {
		if d := r.Decide(context.Background(), in); !d.Allow {
			b.Fatal(d.Reasons)
		}
	}
}

func BenchmarkInputValue(b *testing.B) {
	in := alice()
	b.ReportAllocs()
	for b.Loop() {
		_ = in.value()
	}
}

func BenchmarkInputValuePrebuilt(b *testing.B) {
	in := alice()
	in.UseParts(in.Prebuild())
	b.ReportAllocs()
	for b.Loop() {
		_ = in.value()
	}
}
