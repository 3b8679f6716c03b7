/* Context switch for AArch64 (AAPCS64): x19-x29, the link register and the
 * low halves of v8-v15 are callee-saved. */
	.text
	.globl urt__ctx_switch
	.hidden urt__ctx_switch
	.type urt__ctx_switch, %function
/* void urt__ctx_switch(void **save (x0), void *load (x1)) */
urt__ctx_switch:
	sub sp, sp, #160
	stp x19, x20, [sp, #0]
	stp x21, x22, [sp, #16]
	stp x23, x24, [sp, #32]
	stp x25, x26, [sp, #48]
	stp x27, x28, [sp, #64]
	stp x29, x30, [sp, #80]
	stp d8, d9, [sp, #96]
	stp d10, d11, [sp, #112]
	stp d12, d13, [sp, #128]
	stp d14, d15, [sp, #144]
	mov x2, sp
	str x2, [x0]
	mov sp, x1
	ldp x19, x20, [sp, #0]
	ldp x21, x22, [sp, #16]
	ldp x23, x24, [sp, #32]
	ldp x25, x26, [sp, #48]
	ldp x27, x28, [sp, #64]
	ldp x29, x30, [sp, #80]
	ldp d8, d9, [sp, #96]
	ldp d10, d11, [sp, #112]
	ldp d12, d13, [sp, #128]
	ldp d14, d15, [sp, #144]
	add sp, sp, #160
	ret
	.size urt__ctx_switch, .-urt__ctx_switch

	.globl urt__ctx_start
	.hidden urt__ctx_start
	.type urt__ctx_start, %function
/* A new task's first "return": x19 holds the argument and x20 the entry
 * function, both placed by urt__ctx_init. */
urt__ctx_start:
	mov x29, #0
	mov x0, x19
	blr x20
	brk #0
	.size urt__ctx_start, .-urt__ctx_start

	.section .note.GNU-stack,"",%progbits
