/* version: the library's version at run time, as opposed to the header's
 * URT_VERSION_* macros that a program was compiled against. */
#include "urt.h"

/* CMake passes project(VERSION) in; a header whose macros differ from it does
 * not build (keep include/urt.h and CMakeLists.txt in step). */
#if defined(URT_PROJECT_VERSION_MAJOR) && defined(URT_PROJECT_VERSION_MINOR) && \
	defined(URT_PROJECT_VERSION_PATCH)
_Static_assert(URT_VERSION_MAJOR == URT_PROJECT_VERSION_MAJOR &&
		       URT_VERSION_MINOR == URT_PROJECT_VERSION_MINOR &&
		       URT_VERSION_PATCH == URT_PROJECT_VERSION_PATCH,
	       "URT_VERSION_* in include/urt.h differ from project(VERSION) in CMakeLists.txt");
#endif

#define URT__STR_(x) #x
#define URT__STR(x) URT__STR_(x)

const char *urt_version(void)
{
	return URT__STR(URT_VERSION_MAJOR) "." URT__STR(URT_VERSION_MINOR) "." URT__STR(
		URT_VERSION_PATCH);
}
