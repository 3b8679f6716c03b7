/* Context switch for x86-64 (System V). Only the callee-saved registers
 * need saving: the caller of urt__ctx_switch has spilled the rest. The
 * x87 control word and MXCSR are left alone (tasks share the thread's). */
	.text
	.globl urt__ctx_switch
	.hidden urt__ctx_switch
	.type urt__ctx_switch, @function
/* void urt__ctx_switch(void **save (rdi), void *load (rsi)) */
urt__ctx_switch:
	.cfi_startproc
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, (%rdi)
	movq %rsi, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	/* ret, not an indirect jump: task-to-task switches all come through
	 * the same calls, so the return stack buffer predicts this ret and
	 * the rets that follow it. (A jmp leaves this call's entry on the
	 * buffer, and every later ret of the task mispredicts.) */
	ret
	.cfi_endproc
	.size urt__ctx_switch, .-urt__ctx_switch

	.globl urt__ctx_start
	.hidden urt__ctx_start
	.type urt__ctx_start, @function
/* A new task's first "return address": r12 holds the argument and r13 the
 * entry function, both placed by urt__ctx_init. The stack is 16-byte
 * aligned here, as the call below requires. */
urt__ctx_start:
	.cfi_startproc
	.cfi_undefined rip
	xorl %ebp, %ebp
	movq %r12, %rdi
	callq *%r13
	ud2
	.cfi_endproc
	.size urt__ctx_start, .-urt__ctx_start

	.section .note.GNU-stack,"",@progbits
