/* Tasks: run, spawn, join, detach, yield order. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <urt.h>

static int return_42(void *arg)
{
	(void)arg;
	return 42;
}

static void test_run_returns_result(void **state)
{
	int result = 0;

	(void)state;
	assert_int_equal(urt_run(return_42, NULL, &result), 0);
	assert_int_equal(result, 42);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_run_returns_result),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
