/* The first frame of a new task, laid out as urt__ctx_switch pops it. */
#include <stdint.h>
#include <string.h>

#include "../task.h"

void urt__ctx_start(void);

void *urt__ctx_init(void *stack_top, void (*entry)(void *), void *arg)
{
	uintptr_t top = (uintptr_t)stack_top & ~(uintptr_t)15;
	void **sp;

#if defined(__x86_64__)
	/* Popped in order: r15 r14 r13 r12 rbx rbp, then ret into
	 * urt__ctx_start with the stack 16-byte aligned. */
	sp = (void **)top - 7;
	memset(sp, 0, 7 * sizeof(void *));
	sp[2] = (void *)entry;   /* r13 */
	sp[3] = arg;             /* r12 */
	sp[6] = (void *)urt__ctx_start; /* return address; ret leaves rsp = top */
	return sp;
#elif defined(__aarch64__)
	sp = (void **)(top - 160);
	memset(sp, 0, 160);
	sp[0] = arg;                    /* x19 */
	sp[1] = (void *)entry;          /* x20 */
	sp[11] = (void *)urt__ctx_start; /* x30 */
	return sp;
#else
#error "urt has a context switch for x86-64 and aarch64 only"
#endif
}
