/*
 * iotsafe-run: starts a program with DANE added to its OpenSSL 3 TLS connections, by
 * preloading libiotsafe_preload.so. Options become IOTSAFE_DANE_* variables, which the shim
 * reads (and, for what they leave unset, the provider's section of openssl.cnf).
 *
 *   iotsafe-run [OPTIONS] [--] PROGRAM [ARGS...]
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "iotsafe_dane.h"

#ifndef IOTSAFE_LIBDIR
#define IOTSAFE_LIBDIR "/usr/local/lib"
#endif

#ifndef IOTSAFE_OPENSSL_CNF
#define IOTSAFE_OPENSSL_CNF "/usr/local/share/iotsafe-dane/openssl.cnf"
#endif

#define PRELOAD_NAME "libiotsafe_preload.so"

static const char usage[] =
	"usage: iotsafe-run [OPTIONS] [--] PROGRAM [ARGS...]\n"
	"Runs PROGRAM with DANE (DNSSEC-validated TLSA records) added to the TLS connections it\n"
	"makes through OpenSSL 3's libssl.\n"
	"\n"
	"  --policy require|opportunistic  a server without secure TLSA records is refused\n"
	"                                  (require, the default) or left to the program's checks\n"
	"  --resolver ADDR:PORT            DNS server asked (default 127.0.0.1:53)\n"
	"  --trust-anchor FILE             root DNSKEY/DS lines (default: the IANA root keys)\n"
	"  --trust-ad                      take the AD bit of the validating resolver (which\n"
	"                                  must be on loopback) instead of validating here\n"
	"  --timeout-ms N                  time-out of a whole DNS look-up (default 5000)\n"
	"  --device-identity NAME          present the card's certificate and key when the\n"
	"                                  program configured none, and answer dane_clientid\n"
	"                                  requests with NAME (the device's TLSA owner name)\n"
	"  --broker                        server side: verify client certificates by the TLSA\n"
	"                                  records of the client's name (needs\n"
	"                                  --allowed-domains: else every client is refused)\n"
	"  --allowed-domains LIST          broker: the domains device names must be in\n"
	"                                  (comma-separated)\n"
	"  --allow-no-dane                 start a program the shim cannot reach (static) anyway\n"
	"  --quiet                         no log lines on stderr\n"
	"  -h, --help                      this text\n"
	"\n"
	"Each option has a variable (IOTSAFE_DANE_POLICY, _RESOLVER, _TRUST_ANCHOR, _TRUST_AD=1,\n"
	"_TIMEOUT_MS, _DEVICE_IDENTITY, _BROKER=1, _ALLOWED_DOMAINS, _QUIET=1) and a key in\n"
	"the provider's openssl.cnf section (dane-policy, dane-resolver, dane-trust-anchor,\n"
	"dane-trust-ad, dane-timeout-ms, dane-device-identity, dane-broker,\n"
	"dane-allowed-domains); an option overrides the\n"
	"variable, the variable the file. OPENSSL_CONF, when unset, is set to the installed\n"
	"openssl.cnf that loads the iotsafe provider.\n";

static void die(int code, const char *fmt, const char *arg)
{
	fprintf(stderr, "iotsafe-run: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(code);
}

/* The directory this launcher runs from (no trailing slash). */
static void own_dir(char *dir, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", dir, len - 1);
	if (n <= 0)
		die(127, "cannot read /proc/self/exe: %s", strerror(errno));
	dir[n] = 0;
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* The shim: beside the launcher (the build directory), in ../lib (an installation), or in the
 * library directory the build was made for (an installation with another LIBDIR). */
static void find_shim(const char *dir, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", dir, PRELOAD_NAME);
	if (exists(path))
		return;
	snprintf(path, len, "%s/../lib/%s", dir, PRELOAD_NAME);
	if (exists(path))
		return;
	snprintf(path, len, "%s/%s", IOTSAFE_LIBDIR, PRELOAD_NAME);
	if (exists(path))
		return;
	die(127, "%s is neither beside the launcher, nor in ../lib, nor in " IOTSAFE_LIBDIR,
	    PRELOAD_NAME);
}

/* `program` as execvp would find it (NULL when not found). */
static char *find_program(const char *program)
{
	if (strchr(program, '/'))
		return strdup(program);
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/bin:/bin";
	char *copy = strdup(path), *save = NULL;
	for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char full[PATH_MAX];
		snprintf(full, sizeof full, "%s/%s", *d ? d : ".", program);
		if (access(full, X_OK) == 0) {
			free(copy);
			return strdup(full);
		}
	}
	free(copy);
	return NULL;
}

/* 1 when `path` is an ELF executable with no program interpreter: the dynamic linker never
 * runs, so LD_PRELOAD never loads the shim. Scripts and dynamic programs are 0. */
static int statically_linked(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	Elf64_Ehdr eh;
	int is_static = 0;
	if (fread(&eh, sizeof eh, 1, f) == 1 && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
	    eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_phentsize == sizeof(Elf64_Phdr) &&
	    eh.e_phnum < 256) {
		is_static = 1;
		for (int i = 0; i < eh.e_phnum; i++) {
			Elf64_Phdr ph;
			if (fseek(f, (long)(eh.e_phoff + (Elf64_Off)i * sizeof ph), SEEK_SET) ||
			    fread(&ph, sizeof ph, 1, f) != 1) {
				is_static = 0;
				break;
			}
			if (ph.p_type == PT_INTERP) {
				is_static = 0;
				break;
			}
		}
	}
	fclose(f);
	return is_static;
}

/* 1 when the dynamic linker runs `path` in secure-execution mode, where it ignores
 * LD_PRELOAD: set-user-ID or set-group-ID to someone else than the caller, or with file
 * capabilities. */
static int preload_ignored(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return 0;
	return ((st.st_mode & S_ISUID) && st.st_uid != geteuid()) ||
	       ((st.st_mode & S_ISGID) && st.st_gid != getegid()) ||
	       getxattr(path, "security.capability", NULL, 0) > 0;
}

static void set(const char *name, const char *value)
{
	if (setenv(name, value, 1) != 0)
		die(127, "cannot set %s", name);
}

static void preload(const char *shim)
{
	/* LD_PRELOAD splits its list on spaces and colons: such a path would load nothing. */
	if (strpbrk(shim, " :\t"))
		die(126,
		    "the shim's path \"%s\" has a space or colon, on which LD_PRELOAD splits: the "
		    "program would run without DANE; not started (install it elsewhere)",
		    shim);
	const char *old = getenv("LD_PRELOAD");
	if (!old || !*old) {
		set("LD_PRELOAD", shim);
		return;
	}
	size_t len = strlen(shim) + strlen(old) + 2;
	char *both = malloc(len);
	if (!both)
		die(127, "%s", "out of memory");
	snprintf(both, len, "%s:%s", shim, old);
	set("LD_PRELOAD", both);
	free(both);
}

/* The openssl.cnf that loads the provider, when the caller named none: the installed one
 * (../share/iotsafe-dane) or the one this build was made for. In the build directory the
 * provider module is beside the launcher (OPENSSL_MODULES). */
static void openssl_defaults(const char *dir)
{
	char path[PATH_MAX + 64];
	if (!getenv("OPENSSL_CONF")) {
		snprintf(path, sizeof path, "%s/../share/iotsafe-dane/openssl.cnf", dir);
		set("OPENSSL_CONF", exists(path) ? path : IOTSAFE_OPENSSL_CNF);
	}
	snprintf(path, sizeof path, "%s/iotsafe.so", dir);
	if (!getenv("OPENSSL_MODULES") && exists(path))
		set("OPENSSL_MODULES", dir);
}

/* The value of option `argv[*i]` (`--name VALUE` or `--name=VALUE`), or NULL when it is not
 * `name`. */
static const char *option(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);
	const char *arg = argv[*i];
	if (strncmp(arg, name, n))
		return NULL;
	if (arg[n] == '=')
		return arg + n + 1;
	if (arg[n])
		return NULL;
	if (*i + 1 >= argc)
		die(2, "%s needs a value", name);
	return argv[++*i];
}

int main(int argc, char **argv)
{
	int allow_no_dane = 0, i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *v;
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return 0;
		} else if ((v = option(argc, argv, &i, "--policy"))) {
			if (strcmp(v, "require") && strcmp(v, "opportunistic"))
				die(2, "--policy %s: expected require or opportunistic", v);
			set("IOTSAFE_DANE_POLICY", v);
		} else if ((v = option(argc, argv, &i, "--resolver"))) {
			set("IOTSAFE_DANE_RESOLVER", v);
		} else if ((v = option(argc, argv, &i, "--trust-anchor"))) {
			if (!exists(v))
				die(2, "--trust-anchor %s: no such file", v);
			set("IOTSAFE_DANE_TRUST_ANCHOR", v);
		} else if (!strcmp(argv[i], "--trust-ad")) {
			set("IOTSAFE_DANE_TRUST_AD", "1");
		} else if ((v = option(argc, argv, &i, "--timeout-ms"))) {
			char *end;
			unsigned long ms = strtoul(v, &end, 10);
			if (!*v || *end || ms == 0 || ms > IOTSAFE_DANE_MAX_LOOKUP_TIMEOUT_MS)
				die(2, "--timeout-ms %s: expected 1 to 60000", v);
			set("IOTSAFE_DANE_TIMEOUT_MS", v);
		} else if ((v = option(argc, argv, &i, "--device-identity"))) {
			set("IOTSAFE_DANE_DEVICE_IDENTITY", v);
		} else if ((v = option(argc, argv, &i, "--allowed-domains"))) {
			if (!v[strspn(v, ", ")])
				die(2, "--allowed-domains %s: expected one or more domains", v);
			set("IOTSAFE_DANE_ALLOWED_DOMAINS", v);
		} else if (!strcmp(argv[i], "--broker")) {
			set("IOTSAFE_DANE_BROKER", "1");
		} else if (!strcmp(argv[i], "--quiet")) {
			set("IOTSAFE_DANE_QUIET", "1");
		} else if (!strcmp(argv[i], "--allow-no-dane")) {
			allow_no_dane = 1;
		} else {
			fputs(usage, stderr);
			die(2, "unknown option %s", argv[i]);
		}
	}
	if (i >= argc) {
		fputs(usage, stderr);
		return 2;
	}
	char *program = find_program(argv[i]);
	if (!program)
		die(127, "%s: command not found", argv[i]);
	if (statically_linked(program) && !allow_no_dane)
		die(126,
		    "%s is statically linked: the preloaded shim cannot reach its TLS, so it "
		    "would run without DANE; not started (--allow-no-dane starts it anyway)",
		    program);

	if (preload_ignored(program) && !allow_no_dane)
		die(126,
		    "%s is set-user-ID, set-group-ID or has file capabilities: the dynamic linker "
		    "ignores LD_PRELOAD for it, so it would run without DANE; not started "
		    "(--allow-no-dane starts it anyway)",
		    program);

	char dir[PATH_MAX], shim[PATH_MAX + 64];
	own_dir(dir, sizeof dir);
	find_shim(dir, shim, sizeof shim);
	preload(shim);
	openssl_defaults(dir);
	execv(program, argv + i);
	die(126, "cannot run %s", program);
}
