package window

import "testing"

func benchmarkUpdate(b *testing.B, kind AggKind, n int) {
	a := mustAgg(b, kind, 0)
	vs := make([]int64, n)
	for i := range vs {
		vs[i] = int64(i) * 104729
	}
	s := fold(b, a, vs)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := a.Update(s, int64(i)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUpdateSum(b *testing.B)                { benchmarkUpdate(b, AggSum, 10) }
func BenchmarkUpdateDistinctSparse100(b *testing.B)  { benchmarkUpdate(b, AggDistinct, 100) }
func BenchmarkUpdateDistinctSparse3000(b *testing.B) { benchmarkUpdate(b, AggDistinct, 3000) }
func BenchmarkUpdateDistinctDense(b *testing.B)      { benchmarkUpdate(b, AggDistinct, 20000) }
