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
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
	"  --allow-no-dane                 start a program the shim cannot reach anyway (static,\n"
	"                                  another ELF class, another libssl, GnuTLS/NSS/...)\n"
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

/* `path` opened for reading when it is a regular file, else NULL: opening a FIFO or a terminal
 * for reading could block for ever, so it is opened non-blocking and checked before any read. */
static FILE *open_regular(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	FILE *f = NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		f = fdopen(fd, "rb");
	if (!f)
		close(fd);
	return f;
}

/* 1 when the 64-bit ELF file `f` (header `eh`) has no program interpreter: the dynamic linker
 * never runs, so LD_PRELOAD never loads the shim. */
static int statically_linked(FILE *f, const Elf64_Ehdr *eh)
{
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_phentsize != sizeof(Elf64_Phdr) ||
	    eh->e_phnum >= 256)
		return 0;
	for (int i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr ph;
		if (fseek(f, (long)(eh->e_phoff + (Elf64_Off)i * sizeof ph), SEEK_SET) ||
		    fread(&ph, sizeof ph, 1, f) != 1)
			return 0;
		if (ph.p_type == PT_INTERP)
			return 0;
	}
	return 1;
}

/* ---- what the shim cannot reach ----------------------------------------------------------- */

/* TLS libraries other than OpenSSL 3's libssl (as the shim's own list). */
static const char *const OTHER_TLS[] = {"libgnutls", "libmbedtls", "libnss3", "libwolfssl"};

/* The ELF header of `path` (64-bit layout; the class and machine fields are where they are for
 * 32-bit files too). 0 when it is no ELF file. */
static int read_elf_header(FILE *f, Elf64_Ehdr *eh)
{
	return fread(eh, sizeof *eh, 1, f) == 1 && !memcmp(eh->e_ident, ELFMAG, SELFMAG);
}

/* Whether an ELF file of this class and machine can have this launcher's shim loaded: the
 * launcher is built as the shim is. */
static int same_abi_as_launcher(const Elf64_Ehdr *eh)
{
	static Elf64_Ehdr own;
	static int have_own;
	if (!have_own) {
		FILE *f = fopen("/proc/self/exe", "rb");
		have_own = f && read_elf_header(f, &own);
		if (f)
			fclose(f);
		if (!have_own)
			return 1; /* cannot tell: the dynamic linker will say */
	}
	return eh->e_ident[EI_CLASS] == own.e_ident[EI_CLASS] && eh->e_machine == own.e_machine;
}

/* The file offset of virtual address `vaddr` in the loadable segments `ph` (0: none). */
static long file_offset(const Elf64_Phdr *ph, int n, Elf64_Addr vaddr)
{
	for (int i = 0; i < n; i++)
		if (ph[i].p_type == PT_LOAD && vaddr >= ph[i].p_vaddr &&
		    vaddr - ph[i].p_vaddr < ph[i].p_filesz)
			return (long)(ph[i].p_offset + (vaddr - ph[i].p_vaddr));
	return 0;
}

/* Calls `visit(name, arg)` for each DT_NEEDED entry of the 64-bit ELF file `f` (header `eh`),
 * until it returns non-zero (that value); 0 when the file needs nothing it was told of. The
 * sizes read are bounded: a malformed file just yields fewer names. */
static int each_needed(FILE *f, const Elf64_Ehdr *eh, int (*visit)(const char *, void *),
		       void *arg)
{
	enum { MAX_PHDRS = 256, MAX_DYN = 4096, MAX_STRTAB = 1 << 20 };
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_phentsize != sizeof(Elf64_Phdr) ||
	    eh->e_phnum == 0 || eh->e_phnum > MAX_PHDRS)
		return 0;
	Elf64_Phdr ph[MAX_PHDRS];
	if (fseek(f, (long)eh->e_phoff, SEEK_SET) || fread(ph, sizeof *ph, eh->e_phnum, f) != eh->e_phnum)
		return 0;
	const Elf64_Phdr *dynamic = NULL;
	for (int i = 0; i < eh->e_phnum; i++)
		if (ph[i].p_type == PT_DYNAMIC)
			dynamic = &ph[i];
	if (!dynamic)
		return 0;
	size_t count = dynamic->p_filesz / sizeof(Elf64_Dyn);
	if (count > MAX_DYN)
		count = MAX_DYN;
	Elf64_Dyn *dyn = calloc(count ? count : 1, sizeof *dyn);
	int found = 0;
	char *strtab = NULL;
	if (!dyn || fseek(f, (long)dynamic->p_offset, SEEK_SET) ||
	    fread(dyn, sizeof *dyn, count, f) != count)
		goto out;
	Elf64_Addr strtab_addr = 0;
	Elf64_Xword strtab_size = 0;
	for (size_t i = 0; i < count && dyn[i].d_tag != DT_NULL; i++) {
		if (dyn[i].d_tag == DT_STRTAB)
			strtab_addr = dyn[i].d_un.d_ptr;
		else if (dyn[i].d_tag == DT_STRSZ)
			strtab_size = dyn[i].d_un.d_val;
	}
	long strtab_at = file_offset(ph, eh->e_phnum, strtab_addr);
	if (!strtab_at || strtab_size == 0 || strtab_size > MAX_STRTAB)
		goto out;
	strtab = malloc(strtab_size + 1);
	if (!strtab || fseek(f, strtab_at, SEEK_SET) || fread(strtab, 1, strtab_size, f) != strtab_size)
		goto out;
	strtab[strtab_size] = '\0';
	for (size_t i = 0; i < count && dyn[i].d_tag != DT_NULL && !found; i++)
		if (dyn[i].d_tag == DT_NEEDED && dyn[i].d_un.d_val < strtab_size)
			found = visit(strtab + dyn[i].d_un.d_val, arg);
out:
	free(strtab);
	free(dyn);
	return found;
}

/* What a program's DT_NEEDED says about its TLS: OpenSSL 3's libssl, another libssl, or
 * another TLS library. */
struct tls_needs {
	int openssl3;
	char other_libssl[64];
	char other_tls[64];
};

static int note_tls_library(const char *name, void *arg)
{
	struct tls_needs *needs = arg;
	if (!strcmp(name, "libssl.so.3"))
		needs->openssl3 = 1;
	else if (!strncmp(name, "libssl.so", 9) && !needs->other_libssl[0])
		snprintf(needs->other_libssl, sizeof needs->other_libssl, "%s", name);
	for (size_t i = 0; i < sizeof OTHER_TLS / sizeof *OTHER_TLS; i++)
		if (!strncmp(name, OTHER_TLS[i], strlen(OTHER_TLS[i])) && !needs->other_tls[0])
			snprintf(needs->other_tls, sizeof needs->other_tls, "%s", name);
	return 0;
}

/* The interpreter a "#!" script names (`/usr/bin/env NAME` is NAME found on PATH), or NULL. */
static char *find_program(const char *program);

static char *script_interpreter(FILE *f)
{
	char line[PATH_MAX + 8];
	rewind(f);
	if (!fgets(line, sizeof line, f) || strncmp(line, "#!", 2))
		return NULL;
	char *save = NULL;
	char *interpreter = strtok_r(line + 2, " \t\r\n", &save);
	if (!interpreter)
		return NULL;
	if (!strcmp(interpreter, "/usr/bin/env") || !strcmp(interpreter, "/bin/env")) {
		char *name = strtok_r(NULL, " \t\r\n", &save);
		/* env's own options (env -S ...) are not followed. */
		return name && name[0] != '-' ? find_program(name) : NULL;
	}
	return strdup(interpreter);
}

/* What unreachable() found: nothing; a program the shim is never loaded into (the dynamic
 * linker ignores it for another ABI, or ignores LD_PRELOAD, or never runs, or the file is no
 * regular file), or one it is loaded into but whose TLS library it does not reach.
 * NEVER_PRELOADED stops the launcher whatever the policy. */
enum { REACHABLE, UNREACHABLE_ABI, UNREACHABLE_LIBRARY, NEVER_PRELOADED };

static int preload_ignored(const char *path);

/* unreachable() for the ELF file `f` (header `eh`). */
static int unreachable_elf(FILE *f, const Elf64_Ehdr *eh, const char *path, char *why,
			   size_t len)
{
	if (!same_abi_as_launcher(eh)) {
		snprintf(why, len,
			 "%s is a %s program for another ABI than the shim's: the dynamic linker "
			 "ignores the shim for it",
			 path, eh->e_ident[EI_CLASS] == ELFCLASS32 ? "32-bit" : "64-bit");
		return UNREACHABLE_ABI;
	}
	struct tls_needs needs = {0};
	each_needed(f, eh, note_tls_library, &needs);
	if (needs.other_libssl[0]) {
		snprintf(why, len,
			 "%s is linked against another OpenSSL (%s), which the shim does not reach",
			 path, needs.other_libssl);
		return UNREACHABLE_LIBRARY;
	}
	if (needs.other_tls[0] && !needs.openssl3) {
		snprintf(why, len, "%s uses %s, not OpenSSL 3's libssl", path, needs.other_tls);
		return UNREACHABLE_LIBRARY;
	}
	return REACHABLE;
}

/* Why the shim cannot reach the TLS of `path` (written to `why`; UNREACHABLE_* or
 * NEVER_PRELOADED), or REACHABLE when nothing says so: a file that is no regular file, one
 * run in secure-execution mode (set-user-ID, capabilities), a statically linked program, an
 * ELF file of another class or machine (the dynamic linker ignores the shim: "wrong ELF
 * class"), one linked against another libssl, or against another TLS library and not libssl;
 * for a "#!" script, the same along its chain of interpreters (`depth` bounds scripts naming
 * scripts). `script` is the script `path` interprets (NULL for the program itself). */
static int unreachable(const char *path, const char *script, char *why, size_t len, int depth)
{
	char what[PATH_MAX * 2 + 64];
	if (script)
		snprintf(what, sizeof what, "%s (the interpreter of %s)", path, script);
	else
		snprintf(what, sizeof what, "%s", path);
	struct stat st;
	if (stat(path, &st) != 0)
		return REACHABLE; /* exec says why */
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, len, "%s is not a regular file", what);
		return NEVER_PRELOADED;
	}
	if (preload_ignored(path)) {
		snprintf(why, len,
			 "%s is set-user-ID, set-group-ID or has file capabilities: the dynamic "
			 "linker ignores LD_PRELOAD for it",
			 what);
		return NEVER_PRELOADED;
	}
	FILE *f = open_regular(path);
	if (!f)
		return REACHABLE; /* unreadable (execute-only): nothing to tell */
	Elf64_Ehdr eh;
	int found = REACHABLE;
	if (read_elf_header(f, &eh)) {
		if (statically_linked(f, &eh)) {
			snprintf(why, len,
				 "%s is statically linked: the preloaded shim cannot reach its TLS",
				 what);
			found = NEVER_PRELOADED;
		} else {
			found = unreachable_elf(f, &eh, what, why, len);
		}
	} else if (depth < 4) {
		char *interpreter = script_interpreter(f);
		if (interpreter)
			found = unreachable(interpreter, path, why, len, depth + 1);
		free(interpreter);
	}
	fclose(f);
	return found;
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

/* Whether the policy is require: --policy, else IOTSAFE_DANE_POLICY, else the default. (The
 * launcher does not read dane-policy of openssl.cnf: a policy set only there counts as
 * require here.) */
static int requires_dane(void)
{
	const char *policy = getenv("IOTSAFE_DANE_POLICY");
	return !policy || strcasecmp(policy, "opportunistic") != 0;
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
	char why[PATH_MAX * 4 + 256];
	int cannot_reach = unreachable(program, NULL, why, sizeof why, 0);
	if (cannot_reach == NEVER_PRELOADED && !allow_no_dane)
		die(126,
		    "%s, so it would run without DANE; not started (--allow-no-dane starts it "
		    "anyway)",
		    why);
	if (cannot_reach && !allow_no_dane && requires_dane())
		die(126,
		    "%s: its TLS connections would get no DANE; not started under policy require "
		    "(--allow-no-dane starts it anyway)",
		    why);
	/* (A program the shim is loaded into says so itself, at start.) */
	if (cannot_reach == UNREACHABLE_ABI && !getenv("IOTSAFE_DANE_QUIET"))
		fprintf(stderr, "iotsafe-run: %s: its TLS connections get no DANE\n", why);
	/* The shim refuses such libraries in the processes the program starts in turn. */
	if (allow_no_dane)
		set("IOTSAFE_DANE_ALLOW_NO_DANE", "1");

	char dir[PATH_MAX], shim[PATH_MAX + 64];
	own_dir(dir, sizeof dir);
	find_shim(dir, shim, sizeof shim);
	preload(shim);
	openssl_defaults(dir);
	execv(program, argv + i);
	die(126, "cannot run %s", program);
}
