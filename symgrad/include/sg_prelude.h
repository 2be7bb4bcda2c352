/* sg_prelude.h: the one header a generated kernel includes, first in each of its
 * translation units: sg_kernel.h, the loop drivers (sg_drivers.h), the random
 * numbers (sg_random.h) and OpenBLAS's cblas.h.
 *
 * One header, included first, so that its precompiled form can stand in for it:
 * setup.py builds sg_prelude.h.gch with the kernels' flags (symgrad/pch/), and
 * symgrad/compiler.py puts its folder on the include path of a unit compiled with
 * exactly those flags, by the same compiler, from these same headers; otherwise gcc
 * reads the text, as every other compiler does. Nothing here may depend on a macro a
 * unit defines before including it (such a unit could not use the precompiled
 * form): kernels tune what they must after it (SG_STEP_O0, sg_drivers.h).
 */
#ifndef SG_PRELUDE_H
#define SG_PRELUDE_H

#include "sg_kernel.h"
#include "sg_drivers.h"
/* the hand-vectorised Philox blocks from the support library, not inline: no <immintrin.h> */
#define SG_RAND_BLOCKS_EXTERN
#include "sg_random.h"
#include "cblas.h"

#endif
