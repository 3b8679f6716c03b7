/* urt_version(), the library's version at run time, equals the header's
 * URT_VERSION_* macros and project(VERSION) (URT_PROJECT_VERSION, passed in
 * by CMake). */
#include <stdio.h>
#include <string.h>

#include <urt.h>

#if !defined(URT_VERSION_MAJOR) || !defined(URT_VERSION_MINOR) || !defined(URT_VERSION_PATCH)
#error "urt.h lacks a URT_VERSION_* macro"
#endif
#if URT_VERSION_MAJOR < 0 || URT_VERSION_MINOR < 0 || URT_VERSION_PATCH < 0
#error "URT_VERSION_* must be plain non-negative integers, usable in #if"
#endif

int main(void)
{
	char want[64];
	const char *got = urt_version();

	snprintf(want, sizeof(want), "%d.%d.%d", URT_VERSION_MAJOR, URT_VERSION_MINOR,
		 URT_VERSION_PATCH);
	if (!got || strcmp(got, want) != 0) {
		fprintf(stderr, "urt_version() is \"%s\", the header's macros say \"%s\"\n",
			got ? got : "(null)", want);
		return 1;
	}
#ifdef URT_PROJECT_VERSION
	if (strcmp(got, URT_PROJECT_VERSION) != 0) {
		fprintf(stderr, "urt_version() is \"%s\", project(VERSION) is \"%s\"\n", got,
			URT_PROJECT_VERSION);
		return 1;
	}
#endif
	if (urt_version() != got) { /* one static string */
		fprintf(stderr, "urt_version() returned two different pointers\n");
		return 1;
	}
	printf("urt_version() = \"%s\"\n", got);
	return 0;
}
