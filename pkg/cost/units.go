package cost

import "math/bits"

// A unit is one kind of token that can have a rate of its own. The units
// and their nesting follow the unit registry of genai-prices
// (prices/units.yml): a unit is described by dimensions, and a unit whose
// dimensions include all of another's is a part of it (cache reads are a
// part of the input, cached audio a part of both cache reads and audio
// input).
type unit uint8

const (
	unitInput unit = iota
	unitOutput
	unitCacheRead
	unitCacheWrite
	unitCacheWrite1h
	unitInputAudio
	unitCacheReadAudio
	unitOutputAudio
	unitInputImage
	unitCacheReadImage
	unitOutputImage
	numUnits
)

// unitNames are the YAML names of the rates (see [Price]).
var unitNames = [numUnits]string{
	unitInput: "input", unitOutput: "output", unitCacheRead: "cache_read",
	unitCacheWrite: "cache_write", unitCacheWrite1h: "cache_write_1h",
	unitInputAudio: "input_audio", unitCacheReadAudio: "cache_read_audio", unitOutputAudio: "output_audio",
	unitInputImage: "input_image", unitCacheReadImage: "cache_read_image", unitOutputImage: "output_image",
}

// Dimensions of a unit, one bit each.
const (
	dimInput uint16 = 1 << iota
	dimOutput
	dimCacheRead
	dimCacheWrite
	dimTTL1h
	dimAudio
	dimImage
)

var unitDims = [numUnits]uint16{
	unitInput:          dimInput,
	unitOutput:         dimOutput,
	unitCacheRead:      dimInput | dimCacheRead,
	unitCacheWrite:     dimInput | dimCacheWrite,
	unitCacheWrite1h:   dimInput | dimCacheWrite | dimTTL1h,
	unitInputAudio:     dimInput | dimAudio,
	unitCacheReadAudio: dimInput | dimAudio | dimCacheRead,
	unitOutputAudio:    dimOutput | dimAudio,
	unitInputImage:     dimInput | dimImage,
	unitCacheReadImage: dimInput | dimImage | dimCacheRead,
	unitOutputImage:    dimOutput | dimImage,
}

// unitOrder lists the units most specific first, so that every unit comes
// after all of its parts. parts[u] is the set of units that are strict
// parts of u, as a bit set by unit.
var unitOrder, parts = func() ([numUnits]unit, [numUnits]uint16) {
	var order [numUnits]unit
	var parts [numUnits]uint16
	n := 0
	for n1 := 7; n1 >= 0; n1-- {
		for u := unit(0); u < numUnits; u++ {
			if bits.OnesCount16(unitDims[u]) == n1 {
				order[n] = u
				n++
			}
		}
	}
	for u := unit(0); u < numUnits; u++ {
		for d := unit(0); d < numUnits; d++ {
			if d != u && unitDims[d]&unitDims[u] == unitDims[u] {
				parts[u] |= 1 << d
			}
		}
	}
	return order, parts
}()

// splitLeaves returns, for every unit, the tokens billed at its own rate:
// its count minus what its priced parts bill. A unit is priced when its
// rate is non-zero; input and output always are. Negative results (a part
// reported larger than its whole) are floored at zero.
func splitLeaves(r *rates, counts *[numUnits]int64) [numUnits]int64 {
	var priced uint16 = 1<<unitInput | 1<<unitOutput
	for u := unit(0); u < numUnits; u++ {
		if r[u] != 0 {
			priced |= 1 << u
		}
	}
	var leaves [numUnits]int64
	for _, u := range unitOrder {
		if priced&(1<<u) == 0 {
			continue
		}
		v := counts[u]
		for m := parts[u] & priced; m != 0; m &= m - 1 {
			v -= leaves[bits.TrailingZeros16(m)]
		}
		if v < 0 {
			v = 0
		}
		leaves[u] = v
	}
	return leaves
}
