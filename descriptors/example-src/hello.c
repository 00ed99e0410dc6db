/* hello: the program the example descriptor builds (descriptors/example.yml).
 * SPDX-License-Identifier: GPL-3.0-or-later
 */
#include <stdio.h>

#ifndef GREETING
#define GREETING "Hello"
#endif

int main(void)
{
    /* No __DATE__ or __TIME__: they would make every build different. */
    printf("%s from a deterministic build.\n", GREETING);
    return 0;
}
