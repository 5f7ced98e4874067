/*
 * libiotsafe_preload.so: DANE for unmodified OpenSSL 3 programs, loaded by `iotsafe-run`
 * through LD_PRELOAD. A thin adapter over the core library's C API (iotsafe_dane.h): every
 * DNS look-up, DNSSEC proof and TLSA match is done there, with the process-wide resolver of
 * iotsafe_dane_shared_ex, so a broker with the mosquitto plugin, this shim and the application
 * share one cache (and, through the provider, one card connection).
 *
 * Client side: the handshake entry points SSL_connect and SSL_do_handshake, SSL_read /
 * SSL_peek / SSL_write (and their _ex forms) for handshakes that begin inside them, and the
 * SSL's info callback (held by the shim from SSL_new on) for handshakes libssl starts by
 * itself (BIO_f_ssl). Before the first handshake step of a client SSL, the server's TLSA
 * records at _<port>._tcp.<host> (host from SNI or SSL_set1_host, port from the connected
 * socket, else from the TCP connection the thread last made: `connect` is watched for that)
 * are handed to OpenSSL's DANE (iotsafe_dane_ssl_enable), an offered session is dropped, and
 * the program's verify callback is wrapped so that it cannot overturn a failed check. After
 * the handshake, the verify result and the DANE match are checked again. With a device
 * identity, a client SSL the program gave no certificate presents the card's, and its context
 * answers dane_clientid.
 *
 * Broker side (IOTSAFE_DANE_BROKER, with IOTSAFE_DANE_ALLOWED_DOMAINS): server contexts request
 * dane_clientid and verify client certificates by the TLSA records of the client's name, in
 * the allowed domains (iotsafe_dane_ctx_enable_clientid_server; when that cannot be set up,
 * every client is refused),
 * configured where servers configure verification (SSL_CTX_set_verify) and, for servers that
 * never do, when their first SSL is made (SSL_new). Each server handshake is checked when it
 * starts and again when it finishes (the context still one the shim configured, its verify
 * settings intact, a DANE identity verified): a refused client's SSL_accept, SSL_do_handshake,
 * reads and writes fail. A refused client is logged from SSL_accept / SSL_read, where such
 * servers see their handshakes fail.
 *
 * Traps: libssl calls SSL_do_handshake (and the core library calls libssl) through the PLT,
 * so this code sees its own callees: a thread-local guard lets every call made while the shim
 * is working go straight to libssl, and each SSL is prepared once (ex_data marker), also over
 * non-blocking retries. The real functions are found by dlvsym(RTLD_NEXT, name,
 * "OPENSSL_3.0.0"), the version this shim's own definitions carry (iotsafe_preload.map.in).
 * A program that never uses libssl is told so (at start when it is built on another TLS
 * library, at exit otherwise, since interpreters load libssl late).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/conf.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/store.h>
#include <openssl/x509v3.h>

#include "iotsafe_dane.h"

#define SSL_VERSION "OPENSSL_3.0.0"

/* ---- settings ---------------------------------------------------------------------------- */

/* What the launcher passes (IOTSAFE_DANE_* variables), else the provider's openssl.cnf
 * section (dane-* keys), else the defaults. */
struct settings {
	const char *resolver;	     /* ADDR:PORT; NULL: 127.0.0.1:53 */
	const char *trust_anchor;    /* file; NULL: the IANA root */
	int trust_ad;		     /* take the AD bit of a validating resolver on loopback */
	unsigned timeout_ms;	     /* whole look-up time-out; 0: the library's default */
	int policy;		     /* IOTSAFE_DANE_REQUIRE or _OPPORTUNISTIC */
	int broker;		     /* server contexts verify clients by DANE */
	const char *allowed_domains; /* broker: the domains device names must be in (required) */
	const char *device_identity; /* TLSA owner name answered to dane_clientid; NULL: none */
	int quiet;		     /* no log lines on stderr */
};

static struct settings settings;
static iotsafe_dane *dane;	/* the process's handle, NULL when it could not be made */
static char dane_error[512];	/* why not */
static char broker_error[512];	/* why a broker's clients cannot be verified; "": they can */
static int ssl_marker_index = -1;
static int ctx_marker_index = -1;
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

/* Whether the program made an SSL (every TLS connection through libssl starts with one). */
static atomic_int program_made_ssl;

/* The shim is working on this thread: calls it makes into libssl come back here. */
static __thread int busy;

/* The program's own verify and info callbacks of an SSL whose callbacks the shim holds. */
static int program_verify_index = -1;
static int program_info_index = -1;

/* Markers kept in ex_data: their addresses are the values. A client SSL is PREPARED (the core
 * library configured its server authentication), VERIFIED (a finished handshake passed the
 * checks; back to PREPARED when another handshake starts), PROGRAMS_OWN (opportunistic, no
 * DANE: the program's checks apply) or REFUSED. */
static const char PREPARED = 'p', VERIFIED = 'v', REFUSED = 'r', PROGRAMS_OWN = 'o',
		  BROKER_CTX = 'b', DEVICE_CTX = 'd';

static void say(const char *fmt, ...)
{
	if (settings.quiet)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	fprintf(stderr, "iotsafe-run: %s\n", line);
}

/* A copy of a config value that lives as long as the process (the CONF is freed). */
static const char *keep(const char *value)
{
	return value ? strdup(value) : NULL;
}

/* The provider's section of the configuration file OpenSSL reads (OPENSSL_CONF): the section
 * named by the `iotsafe` entry of the providers list of the init section. */
static const char *provider_section(CONF *conf)
{
	const char *init = NCONF_get_string(conf, NULL, "openssl_conf");
	const char *providers = init ? NCONF_get_string(conf, init, "providers") : NULL;
	return providers ? NCONF_get_string(conf, providers, "iotsafe") : NULL;
}

/* dane-* keys of the provider's section, for settings no variable gave. */
static void read_config_file(const char *keys[], const char **values[], size_t n)
{
	const char *path = getenv("OPENSSL_CONF");
	if (!path)
		return;
	CONF *conf = NCONF_new(NULL);
	if (!conf)
		return;
	if (NCONF_load(conf, path, NULL) > 0) {
		const char *section = provider_section(conf);
		for (size_t i = 0; section && i < n; i++) {
			if (*values[i])
				continue;
			const char *v = NCONF_get_string(conf, section, keys[i]);
			*values[i] = keep(v);
		}
	}
	ERR_clear_error();
	NCONF_free(conf);
}

static int is_true(const char *v)
{
	return v && (!strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "true") ||
		     !strcasecmp(v, "on"));
}

static void read_settings(void)
{
	const char *policy = getenv("IOTSAFE_DANE_POLICY");
	const char *broker = getenv("IOTSAFE_DANE_BROKER");
	const char *quiet = getenv("IOTSAFE_DANE_QUIET");
	const char *trust_ad = getenv("IOTSAFE_DANE_TRUST_AD");
	const char *timeout = getenv("IOTSAFE_DANE_TIMEOUT_MS");
	settings.resolver = getenv("IOTSAFE_DANE_RESOLVER");
	settings.trust_anchor = getenv("IOTSAFE_DANE_TRUST_ANCHOR");
	settings.device_identity = getenv("IOTSAFE_DANE_DEVICE_IDENTITY");
	settings.allowed_domains = getenv("IOTSAFE_DANE_ALLOWED_DOMAINS");
	const char *keys[] = {"dane-resolver",	      "dane-trust-anchor", "dane-policy",
			      "dane-broker",	      "dane-device-identity", "dane-trust-ad",
			      "dane-timeout-ms",      "dane-allowed-domains"};
	const char **values[] = {&settings.resolver,	    &settings.trust_anchor, &policy,
				 &broker,		    &settings.device_identity, &trust_ad,
				 &timeout,		    &settings.allowed_domains};
	read_config_file(keys, values, sizeof keys / sizeof keys[0]);
	settings.policy = policy && !strcasecmp(policy, "opportunistic")
				  ? IOTSAFE_DANE_OPPORTUNISTIC
				  : IOTSAFE_DANE_REQUIRE;
	if (policy && settings.policy == IOTSAFE_DANE_REQUIRE && strcasecmp(policy, "require"))
		say("unknown policy \"%s\": using require", policy);
	settings.broker = is_true(broker);
	settings.quiet = is_true(quiet);
	settings.trust_ad = is_true(trust_ad);
	settings.timeout_ms = timeout ? (unsigned)strtoul(timeout, NULL, 10) : 0;
	if (settings.device_identity && !*settings.device_identity)
		settings.device_identity = NULL;
}

/* A broker admits device names only in the domains it was given: with none, any name with a
 * signed TLSA record anywhere would get in (an attacker's own domain, a certificate naming a
 * victim device). No list, or a bad one, and the broker's clients are all refused. The list is
 * set on the process's shared handle, which a broker plugin in the same process also uses:
 * both must be given the same domains. */
static void restrict_device_names(void)
{
	const char *domains = settings.allowed_domains;
	if (!domains || !domains[strspn(domains, ", ")])
		snprintf(broker_error, sizeof broker_error,
			 "broker mode needs the domains device names must be in (--allowed-domains, "
			 "IOTSAFE_DANE_ALLOWED_DOMAINS or dane-allowed-domains)");
	else if (iotsafe_dane_set_allowed_domains(dane, domains) != 1)
		snprintf(broker_error, sizeof broker_error, "allowed domains \"%s\": %s", domains,
			 iotsafe_dane_last_error());
}

static void setup(void)
{
	busy++;
	read_settings();
	dane = iotsafe_dane_shared_ex(settings.resolver, settings.trust_anchor,
				      settings.trust_ad ? IOTSAFE_DANE_TRUST_AD : 0,
				      settings.timeout_ms);
	if (!dane) {
		snprintf(dane_error, sizeof dane_error, "no DANE resolver (%s)",
			 iotsafe_dane_last_error());
		say("%s: every TLS connection will be refused", dane_error);
	} else if (settings.broker) {
		restrict_device_names();
	}
	ssl_marker_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	ctx_marker_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	program_verify_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	program_info_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	busy--;
}

static void ensure_setup(void)
{
	pthread_once(&setup_once, setup);
}

/* ---- the real libssl ------------------------------------------------------------------- */

/* libssl's own definition of `name`, the next one after this shim. */
static void *real(const char *name)
{
	void *f = dlvsym(RTLD_NEXT, name, SSL_VERSION);
	if (!f) {
		fprintf(stderr, "iotsafe-run: libssl has no %s@%s: %s\n", name, SSL_VERSION,
			dlerror());
		abort();
	}
	return f;
}

/* `real_fn`: libssl's `fn`, looked up on first use (every thread finds the same address). */
#define REAL(fn)                                                                                \
	static __typeof__(&fn) real_##fn;                                                       \
	if (!real_##fn)                                                                         \
		real_##fn = (__typeof__(&fn))real(#fn);

/* ---- client side --------------------------------------------------------------------------- */

/* A refusal as OpenSSL reports errors: the program prints it as it prints any TLS error. */
static int refuse(SSL *ssl, const char *why)
{
	SSL_set_ex_data(ssl, ssl_marker_index, (void *)&REFUSED);
	say("TLS connection refused: %s", why);
	ERR_raise_data(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED, "iotsafe-dane: %s", why);
	return -1;
}

/* A connection refused before, used again: refused again, said once. */
static int refuse_again(SSL *ssl)
{
	(void)ssl;
	ERR_raise_data(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED,
		       "iotsafe-dane: this connection was refused");
	return -1;
}

/* The TCP sockets this thread connected, most recent first, for programs whose BIO hides its
 * socket (curl since 7.87 reads and writes through a BIO of its own): they connect, then
 * handshake on the same thread. Bounded: the oldest are forgotten. */
#define TRACKED_TCP_FDS 16
static __thread int thread_tcp_fds[TRACKED_TCP_FDS];
static __thread int thread_tcp_count;

static void track_tcp_fd(int fd)
{
	int kept = 0;
	for (int i = 0; i < thread_tcp_count; i++) /* an fd number reused: its old entry goes */
		if (thread_tcp_fds[i] != fd && kept < TRACKED_TCP_FDS - 1)
			thread_tcp_fds[kept++] = thread_tcp_fds[i];
	memmove(thread_tcp_fds + 1, thread_tcp_fds, (size_t)kept * sizeof *thread_tcp_fds);
	thread_tcp_fds[0] = fd;
	thread_tcp_count = kept + 1;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	static __typeof__(&connect) real_connect;
	if (!real_connect)
		real_connect = (__typeof__(&connect))dlsym(RTLD_NEXT, "connect");
	int rc = real_connect(fd, addr, len);
	int saved_errno = errno; /* the program reads it (EINPROGRESS) */
	int type = 0;
	socklen_t type_len = sizeof type;
	if (!busy && (rc == 0 || saved_errno == EINPROGRESS) && addr &&
	    (addr->sa_family == AF_INET || addr->sa_family == AF_INET6) &&
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) == 0 && type == SOCK_STREAM)
		track_tcp_fd(fd);
	errno = saved_errno;
	return rc;
}

/* The TCP port of the peer of socket `fd`; 0 when it is no connected TCP socket. */
static unsigned tcp_peer_port(int fd)
{
	struct sockaddr_storage addr;
	socklen_t len = sizeof addr;
	if (fd < 0 || getpeername(fd, (struct sockaddr *)&addr, &len) != 0)
		return 0;
	if (addr.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&addr)->sin_port);
	if (addr.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
	return 0;
}

/* The port of the server `ssl` talks to: of its socket, else (a BIO of the program's own, or
 * a socket that is no TCP connection) the port of the TCP connections this thread made and
 * still has open, when they all go to one port; 0 when there is none or several (`why`, if
 * given, says which). */
static unsigned peer_port_why(SSL *ssl, const char **why)
{
	unsigned port = tcp_peer_port(SSL_get_fd(ssl));
	if (port)
		return port;
	for (int i = 0; i < thread_tcp_count; i++) {
		unsigned candidate = tcp_peer_port(thread_tcp_fds[i]);
		if (candidate && port && candidate != port) {
			if (why)
				*why = "the connection's socket is hidden and this thread has TCP "
				       "connections to several ports open";
			return 0;
		}
		if (candidate)
			port = candidate;
	}
	if (!port && why)
		*why = "the connection has no socket to read the port from";
	return port;
}

static unsigned peer_port(SSL *ssl)
{
	return peer_port_why(ssl, NULL);
}

/* The server's name: SNI first, else the name the program asked OpenSSL to check. An IP
 * address is no name (there is no TLSA for it). */
static const char *server_name(SSL *ssl)
{
	const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (!host)
		host = X509_VERIFY_PARAM_get0_host(SSL_get0_param(ssl), 0);
	unsigned char ip[16];
	if (host && (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1))
		return NULL;
	return host;
}

static int present_device(SSL *ssl);

/* No name or no port to look the server up by: under `require` that is a refusal; under
 * `opportunistic` the program's own checks decide, untouched. The card's identity is not
 * presented to such a server (the card would sign for a peer only the program checked, maybe
 * not at all, and under TLS 1.2 the certificate travels in clear): the program's own
 * certificate, if it set one, is all it gets. */
static int without_dane(SSL *ssl, const char *why)
{
	if (settings.policy == IOTSAFE_DANE_REQUIRE)
		return refuse(ssl, why);
	SSL_set_ex_data(ssl, ssl_marker_index, (void *)&PROGRAMS_OWN);
	say("%s: no DANE (opportunistic), the program's own checks apply%s", why,
	    settings.device_identity ? "; the card's identity is not presented" : "");
	return 1;
}

/* Whether OpenSSL's DANE is on for `ssl` (TLSA records were handed to it). libssl has no query
 * for that, but SSL_dane_tlsa_add answers it without adding anything: for a record with an
 * invalid usage (255) it returns 0 when DANE is enabled and -1 ("DANE not enabled") when not.
 * Its error is dropped. */
static int dane_enabled(SSL *ssl)
{
	ERR_set_mark();
	int rc = SSL_dane_tlsa_add(ssl, 255, 0, 0, NULL, 0);
	ERR_pop_to_mark();
	return rc == 0;
}

/* The verify callback of a prepared client SSL: the program's callback still sees every
 * certificate, but may not turn a failed check into a success (accept-all callbacks, or ones
 * that reset the error to X509_V_OK): the handshake stops there, before any application data. */
static int checks_stand(int preverify_ok, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	SSL_verify_cb program = ssl ? (SSL_verify_cb)SSL_get_ex_data(ssl, program_verify_index)
				    : NULL;
	int error = X509_STORE_CTX_get_error(store);
	int answer = program ? program(preverify_ok, store) : preverify_ok;
	if (!preverify_ok) {
		X509_STORE_CTX_set_error(store, error);
		return 0;
	}
	return answer;
}

/* The verify callback of `ssl` becomes checks_stand, which calls the program's. */
static void hold_verify_callback(SSL *ssl)
{
	SSL_verify_cb current = SSL_get_verify_callback(ssl);
	if (current == checks_stand)
		return; /* prepared again after SSL_clear: the program's is kept already */
	SSL_set_ex_data(ssl, program_verify_index, (void *)current);
	SSL_set_verify(ssl, SSL_get_verify_mode(ssl), checks_stand);
}

/* Once per client connection, before its first handshake step: the TLSA records on OpenSSL's
 * DANE, or a refusal. A session the program offers for resumption is dropped: resuming would
 * skip the server's certificate, so records that changed since (or a verdict a callback
 * overrode) would not count. 1: go on; -1: refused (error queued). */
static int prepare_client(SSL *ssl)
{
	const void *marker = SSL_get_ex_data(ssl, ssl_marker_index);
	if (marker == &REFUSED)
		return refuse_again(ssl);
	if (marker)
		return 1;
	if (!dane)
		return refuse(ssl, dane_error);
	const char *host = server_name(ssl);
	const char *no_port = NULL;
	unsigned port = peer_port_why(ssl, &no_port);
	char why[768];
	if (!host)
		return without_dane(ssl, "the connection has no server name (SNI or SSL_set1_host)");
	if (!port) {
		snprintf(why, sizeof why, "%s: %s", host, no_port);
		return without_dane(ssl, why);
	}
	/* A copy: enabling DANE may set the SNI name, which `host` may point into. */
	char owner[300];
	snprintf(owner, sizeof owner, "%s", host);
	if (iotsafe_dane_ssl_enable(dane, ssl, owner, (uint16_t)port, settings.policy) != 1) {
		snprintf(why, sizeof why, "%s", iotsafe_dane_last_error());
		return refuse(ssl, why);
	}
	if (SSL_get_session(ssl))
		SSL_set_session(ssl, NULL);
	hold_verify_callback(ssl);
	SSL_set_ex_data(ssl, ssl_marker_index, (void *)&PREPARED);
	return present_device(ssl);
}

/* After a finished handshake: the checks of a prepared SSL, whatever the program did to get
 * there (a cert-verify callback of its own that never verified, a verify result it set): the
 * verification passed, a certificate was checked and, when DANE records were on the
 * connection, one of them matched it. 1 or -1 (error queued). */
static int check_client(SSL *ssl)
{
	const void *marker = SSL_get_ex_data(ssl, ssl_marker_index);
	if (marker == &VERIFIED || marker == &PROGRAMS_OWN)
		return 1;
	if (marker == &REFUSED)
		return refuse_again(ssl);
	if (marker != &PREPARED)
		return refuse(ssl, "a handshake the shim did not prepare finished");
	const char *host = server_name(ssl);
	char why[512];
	long result = SSL_get_verify_result(ssl);
	if (result != X509_V_OK) {
		snprintf(why, sizeof why, "%s:%u: %s (accepted by the program's verify callback)",
			 host ? host : "?", peer_port(ssl), X509_verify_cert_error_string(result));
		return refuse(ssl, why);
	}
	if (!SSL_get0_peer_certificate(ssl) ||
	    (dane_enabled(ssl) && SSL_get0_dane_authority(ssl, NULL, NULL) < 0)) {
		snprintf(why, sizeof why, "%s:%u: no TLSA record was matched to the server's certificate",
			 host ? host : "?", peer_port(ssl));
		return refuse(ssl, why);
	}
	SSL_set_ex_data(ssl, ssl_marker_index, (void *)&VERIFIED);
	return 1;
}

/* ---- device identity ------------------------------------------------------------------ */

/* The card's certificate and key, loaded once through the provider's store (its settings:
 * openssl.cnf section and IOTSAFE_* variables). */
static X509 *device_cert;
static EVP_PKEY *device_key;
static char device_error[512];
static pthread_once_t device_once = PTHREAD_ONCE_INIT;

/* The first object of `type` the store at `uri` gives (an up-referenced copy), or NULL. */
static void *load_from_card(const char *uri, int type)
{
	void *found = NULL;
	OSSL_STORE_CTX *store = OSSL_STORE_open(uri, NULL, NULL, NULL, NULL);
	while (store && !found && !OSSL_STORE_eof(store)) {
		OSSL_STORE_INFO *info = OSSL_STORE_load(store);
		if (info && OSSL_STORE_INFO_get_type(info) == type)
			found = type == OSSL_STORE_INFO_CERT ? (void *)OSSL_STORE_INFO_get1_CERT(info)
							     : (void *)OSSL_STORE_INFO_get1_PKEY(info);
		OSSL_STORE_INFO_free(info);
		if (!info)
			break;
	}
	OSSL_STORE_close(store);
	return found;
}

static void load_device_identity(void)
{
	busy++;
	device_cert = load_from_card("iotsafe:type=cert", OSSL_STORE_INFO_CERT);
	device_key = load_from_card("iotsafe:type=private", OSSL_STORE_INFO_PKEY);
	if (!device_cert || !device_key) {
		unsigned long e = ERR_peek_last_error();
		snprintf(device_error, sizeof device_error,
			 "the card's %s could not be loaded (%s)", device_cert ? "key" : "certificate",
			 e ? ERR_reason_error_string(e) : "no such object");
	}
	ERR_clear_error();
	busy--;
}

/* A client context answers dane_clientid requests with the device's name: set up before its
 * first SSL, which copies the context's extensions. */
static void enable_device_ctx(SSL_CTX *ctx)
{
	if (SSL_CTX_get_ex_data(ctx, ctx_marker_index))
		return;
	SSL_CTX_set_ex_data(ctx, ctx_marker_index, (void *)&DEVICE_CTX);
	if (iotsafe_dane_ctx_enable_clientid_client(ctx, settings.device_identity, 0) != 1)
		say("cannot name the device %s: %s", settings.device_identity,
		    iotsafe_dane_last_error());
}

/* A client SSL the program gave no certificate presents the card's. 1, or -1 (refused). */
static int present_device(SSL *ssl)
{
	if (!settings.device_identity || SSL_get_certificate(ssl))
		return 1;
	pthread_once(&device_once, load_device_identity);
	if (!device_cert || !device_key)
		return refuse(ssl, device_error);
	if (SSL_use_certificate(ssl, device_cert) != 1 || SSL_use_PrivateKey(ssl, device_key) != 1) {
		ERR_clear_error();
		return refuse(ssl, "the card's certificate and key do not go together");
	}
	return 1;
}

/* A handshake of a prepared SSL failed in the certificate's verification: say why, as the
 * core library knows it, since many programs print only "TLS error". */
static void report_failure(SSL *ssl)
{
	long result = SSL_get_verify_result(ssl);
	const void *marker = SSL_get_ex_data(ssl, ssl_marker_index);
	if ((marker != &PREPARED && marker != &VERIFIED) || result == X509_V_OK)
		return;
	SSL_set_ex_data(ssl, ssl_marker_index, (void *)&REFUSED);
	iotsafe_dane_reason reason = iotsafe_dane_last_reason(ssl);
	const char *host = server_name(ssl);
	say("TLS connection refused: %s:%u: %s (%s)", host ? host : "?", peer_port(ssl),
	    X509_verify_cert_error_string(result), iotsafe_dane_reason_name(reason));
}

/* A client handshake step through `step` (the real SSL_connect or SSL_do_handshake). */
static int client_handshake(SSL *ssl, int (*step)(SSL *))
{
	busy++;
	ensure_setup();
	int rc = prepare_client(ssl);
	busy--;
	if (rc != 1)
		return rc;
	busy++;
	rc = step(ssl);
	if (rc == 1)
		rc = check_client(ssl);
	else if (SSL_get_error(ssl, rc) == SSL_ERROR_SSL)
		report_failure(ssl);
	busy--;
	return rc;
}

int SSL_connect(SSL *ssl)
{
	REAL(SSL_connect);
	if (busy || !ssl)
		return real_SSL_connect(ssl);
	return client_handshake(ssl, real_SSL_connect);
}

static int server_outcome(SSL *ssl, int rc);

int SSL_do_handshake(SSL *ssl)
{
	REAL(SSL_do_handshake);
	if (busy || !ssl)
		return real_SSL_do_handshake(ssl);
	if (SSL_is_server(ssl))
		return server_outcome(ssl, real_SSL_do_handshake(ssl));
	return client_handshake(ssl, real_SSL_do_handshake);
}

/* ---- broker side ---------------------------------------------------------------------------- */

/* Whether `ctx` makes server connections: a server method, or a verify mode only servers use. */
static int is_server_ctx(SSL_CTX *ctx, int mode)
{
	const SSL_METHOD *m = SSL_CTX_get_ssl_method(ctx);
	return m == TLS_server_method() || m == DTLS_server_method() ||
	       (mode & (SSL_VERIFY_FAIL_IF_NO_PEER_CERT | SSL_VERIFY_CLIENT_ONCE));
}

static int reject_every_certificate(int preverify_ok, X509_STORE_CTX *store)
{
	(void)preverify_ok;
	X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

/* A broker context whose clients cannot be verified by DANE admits none: the server's own
 * verify setting (dropped in broker mode) may be SSL_VERIFY_NONE. Called while `busy`, so
 * SSL_CTX_set_verify is libssl's. */
static void refuse_every_client(SSL_CTX *ctx)
{
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			   reject_every_certificate);
}

/* Client verification by DANE on a server context, once; fails closed. */
static void enable_broker_ctx(SSL_CTX *ctx)
{
	if (SSL_CTX_get_ex_data(ctx, ctx_marker_index))
		return;
	SSL_CTX_set_ex_data(ctx, ctx_marker_index, (void *)&BROKER_CTX);
	if (!dane || broker_error[0]) {
		say("%s: every client of this server is refused", dane ? broker_error : dane_error);
		refuse_every_client(ctx);
		return;
	}
	if (iotsafe_dane_ctx_enable_clientid_server(dane, ctx, 0,
						    IOTSAFE_DANE_CLIENTID_FROM_CERT) != 1) {
		say("cannot verify clients by DANE (%s): every client of this server is refused",
		    iotsafe_dane_last_error());
		refuse_every_client(ctx);
	}
}

void SSL_CTX_set_verify(SSL_CTX *ctx, int mode, SSL_verify_cb cb)
{
	REAL(SSL_CTX_set_verify);
	if (busy || !ctx) {
		real_SSL_CTX_set_verify(ctx, mode, cb);
		return;
	}
	busy++;
	ensure_setup();
	if (settings.broker && is_server_ctx(ctx, mode)) {
		/* Once DANE verifies this context's clients, the server's own verify setting would
		 * undo it: keep ours. */
		if (!SSL_CTX_get_ex_data(ctx, ctx_marker_index))
			enable_broker_ctx(ctx);
	} else {
		real_SSL_CTX_set_verify(ctx, mode, cb);
	}
	busy--;
}

/* A certificate verification of the program's own would skip DANE's (which runs inside
 * X509_verify_cert): in broker mode, ignored on every context that may serve. */
void SSL_CTX_set_cert_verify_callback(SSL_CTX *ctx, int (*cb)(X509_STORE_CTX *, void *),
				      void *arg)
{
	REAL(SSL_CTX_set_cert_verify_callback);
	if (!busy && ctx) {
		busy++;
		ensure_setup();
		busy--;
	}
	const SSL_METHOD *m = ctx ? SSL_CTX_get_ssl_method(ctx) : NULL;
	if (!busy && ctx && settings.broker && m != TLS_client_method() &&
	    m != DTLS_client_method()) {
		say("broker mode: the server's own certificate verification "
		    "(SSL_CTX_set_cert_verify_callback) is ignored");
		return;
	}
	real_SSL_CTX_set_cert_verify_callback(ctx, cb, arg);
}

/* A server handshake step (`rc` its result) on a broker context that failed: the client's
 * refusal, as the core library explains it, goes to the log once (servers such as mosquitto log
 * only OpenSSL's "certificate verify failed"). */
static void report_client_refusal(SSL *ssl, int rc)
{
	if (rc > 0 || !settings.broker || !SSL_is_server(ssl) || SSL_is_init_finished(ssl) ||
	    SSL_get_ex_data(ssl, ssl_marker_index) == &REFUSED ||
	    SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_marker_index) != &BROKER_CTX ||
	    SSL_get_error(ssl, rc) != SSL_ERROR_SSL)
		return;
	char name[256];
	if (iotsafe_dane_peer_identity(ssl, name, sizeof name) == 1)
		return;
	SSL_set_ex_data(ssl, ssl_marker_index, (void *)&REFUSED);
	say("TLS client refused (%s): %s", iotsafe_dane_reason_name(iotsafe_dane_last_reason(ssl)),
	    iotsafe_dane_last_error());
}

/* A server step that succeeded (`rc` > 0: a finished handshake, bytes read or written) for a
 * client the broker mode refused when its handshake finished: -1 instead (error queued), so
 * the server neither admits it nor exchanges data with it. Else `rc`. */
static int server_outcome(SSL *ssl, int rc)
{
	if (rc > 0 && settings.broker && SSL_get_ex_data(ssl, ssl_marker_index) == &REFUSED)
		return refuse_again(ssl);
	return rc;
}

/* mosquitto calls SSL_accept once and finishes the handshake inside SSL_read. */
int SSL_accept(SSL *ssl)
{
	REAL(SSL_accept);
	int rc = real_SSL_accept(ssl);
	if (!busy && ssl) {
		busy++;
		report_client_refusal(ssl, rc);
		rc = server_outcome(ssl, rc);
		busy--;
	}
	return rc;
}

/* Broker mode, before a server's read or write: a handshake still to finish is finished first
 * (mosquitto finishes it inside SSL_read), so that no byte is read or written for a client
 * before the checks at the end of its handshake; a refused client gets no I/O at all. 1: go
 * on; else what the I/O call returns (error queued, or the handshake's want-read/write). */
static int before_server_io(SSL *ssl)
{
	REAL(SSL_do_handshake);
	busy++;
	ensure_setup();
	int rc = 1;
	if (settings.broker && !SSL_is_init_finished(ssl)) {
		rc = real_SSL_do_handshake(ssl);
		report_client_refusal(ssl, rc);
	}
	rc = server_outcome(ssl, rc);
	busy--;
	return rc;
}

/* SSL_read, SSL_peek and SSL_write handshake by themselves when the program did not (a client
 * after SSL_set_connect_state, as `openssl s_client` does; a server such as mosquitto after one
 * SSL_accept). Such a client handshake is run here first, prepared and checked as by
 * SSL_connect, so that nothing the program writes leaves before the server passed; a finished
 * one is checked again. 1: go on with the I/O; else what the I/O call returns (error queued). */
static int before_io(SSL *ssl)
{
	REAL(SSL_do_handshake);
	if (busy || !ssl)
		return 1;
	if (SSL_is_server(ssl))
		return before_server_io(ssl);
	if (!SSL_is_init_finished(ssl))
		return client_handshake(ssl, real_SSL_do_handshake);
	busy++;
	ensure_setup();
	int rc = check_client(ssl);
	busy--;
	return rc;
}

/* After it: the checks of a client handshake finished inside the I/O (a renegotiation), or why
 * one failed; a server's refused client is logged. `rc` stays, unless the client's server, or
 * the server's client (a renegotiation), is refused now (-1). */
static int after_io(SSL *ssl, int rc)
{
	if (busy || !ssl)
		return rc;
	busy++;
	if (SSL_is_server(ssl)) {
		report_client_refusal(ssl, rc);
		rc = server_outcome(ssl, rc);
	} else if (SSL_is_init_finished(ssl) && check_client(ssl) != 1)
		rc = -1;
	else if (rc <= 0 && SSL_get_error(ssl, rc) == SSL_ERROR_SSL)
		report_failure(ssl);
	busy--;
	return rc;
}

int SSL_read(SSL *ssl, void *buf, int num)
{
	REAL(SSL_read);
	int rc = before_io(ssl);
	return rc != 1 ? rc : after_io(ssl, real_SSL_read(ssl, buf, num));
}

int SSL_peek(SSL *ssl, void *buf, int num)
{
	REAL(SSL_peek);
	int rc = before_io(ssl);
	return rc != 1 ? rc : after_io(ssl, real_SSL_peek(ssl, buf, num));
}

int SSL_write(SSL *ssl, const void *buf, int num)
{
	REAL(SSL_write);
	int rc = before_io(ssl);
	return rc != 1 ? rc : after_io(ssl, real_SSL_write(ssl, buf, num));
}

int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)
{
	REAL(SSL_read_ex);
	if (before_io(ssl) != 1)
		return 0;
	return after_io(ssl, real_SSL_read_ex(ssl, buf, num, readbytes)) > 0;
}

int SSL_peek_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)
{
	REAL(SSL_peek_ex);
	if (before_io(ssl) != 1)
		return 0;
	return after_io(ssl, real_SSL_peek_ex(ssl, buf, num, readbytes)) > 0;
}

int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written)
{
	REAL(SSL_write_ex);
	if (before_io(ssl) != 1)
		return 0;
	return after_io(ssl, real_SSL_write_ex(ssl, buf, num, written)) > 0;
}

/* ---- handshakes no interposed function sees ------------------------------------------------ */

/* A handshake can start where no interposed function runs: libssl's own calls (a BIO_f_ssl
 * BIO reads and writes through them), or functions reached by pointer. libssl announces every
 * handshake to the SSL's info callback, which the shim holds from SSL_new on (the program's
 * own is called from it): a client handshake starting unprepared is prepared there, and one
 * that cannot be fails in the server's certificate check, before any application data. */
static void guard_handshake_start(SSL *ssl)
{
	busy++;
	ensure_setup();
	const void *marker = SSL_get_ex_data(ssl, ssl_marker_index);
	if (marker == &VERIFIED) /* a renegotiation: its certificate is checked anew */
		SSL_set_ex_data(ssl, ssl_marker_index, (void *)&PREPARED);
	if (prepare_client(ssl) != 1) {
		SSL_set_session(ssl, NULL);
		SSL_set_verify(ssl, SSL_VERIFY_PEER, reject_every_certificate);
	}
	busy--;
}

/* Why a server SSL does not verify its client as the shim set it up, or NULL: its context must
 * be one the shim configured (one it did not recognise, a TLS_method() context with optional
 * client certificates, or a host context an SNI callback switched to, is configured now, for
 * its next clients), and the SSL must still verify as that context does (the server may have
 * changed it with SSL_set_verify). */
static const char *server_verification_changed(SSL *ssl)
{
	SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
	if (SSL_CTX_get_ex_data(ctx, ctx_marker_index) != &BROKER_CTX) {
		enable_broker_ctx(ctx);
		return "its server context had not been set up for DANE (its next clients will be "
		       "verified)";
	}
	if (SSL_get_verify_callback(ssl) != SSL_CTX_get_verify_callback(ctx) ||
	    SSL_get_verify_mode(ssl) != SSL_CTX_get_verify_mode(ctx))
		return "the server changed this connection's verification (SSL_set_verify)";
	return NULL;
}

static void refuse_client(SSL *ssl, const char *why)
{
	if (SSL_get_ex_data(ssl, ssl_marker_index) == &REFUSED)
		return;
	SSL_set_ex_data(ssl, ssl_marker_index, (void *)&REFUSED);
	say("TLS client refused: %s", why);
}

/* Broker mode, a server handshake starting: a client of an SSL whose verification is not the
 * shim's is refused, in the handshake. */
static void guard_server_handshake(SSL *ssl)
{
	busy++;
	ensure_setup();
	const char *why = server_verification_changed(ssl);
	if (why) {
		refuse_client(ssl, why);
		SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			       reject_every_certificate);
	}
	busy--;
}

/* Broker mode, a server handshake finished: checked again, since the server may have switched
 * the SSL's context or verification after it started (an SNI or ClientHello callback moving it
 * to a host context, as nginx does), or resumed a session no DANE check covered (a session
 * cache it switched back on, callbacks of its own). The client counts only with a DANE
 * identity the core library verified in this handshake or the ticket it resumed; else it is
 * refused, and the server's accept, reads and writes on it fail (server_outcome). */
static void check_server_handshake(SSL *ssl)
{
	busy++;
	ensure_setup();
	const char *why = server_verification_changed(ssl);
	char name[256], no_identity[768];
	if (!why && iotsafe_dane_peer_identity(ssl, name, sizeof name) != 1) {
		snprintf(no_identity, sizeof no_identity,
			 "a handshake finished without a DANE-verified client identity (%s)",
			 iotsafe_dane_last_error());
		why = no_identity;
	}
	if (why)
		refuse_client(ssl, why);
	busy--;
}

/* After the shim's own work in info_callback: the callbacks libssl would have called. The
 * program's SSL-level one replaces the context's, as in libssl, except on a broker context:
 * there the context's callback is the core library's (iotsafe_dane_ctx_enable_clientid_server,
 * which chains the program's context callback), whose hooks start each handshake's
 * verification afresh and settle a resumed session's verdict; skipped, every client would be
 * refused, or a client on an SSL reused with SSL_clear judged by an earlier handshake. */
static void call_program_info_callbacks(SSL *ssl, int where, int ret)
{
	typedef void (*info_cb)(const SSL *, int, int);
	SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
	info_cb own = (info_cb)SSL_get_ex_data(ssl, program_info_index);
	info_cb context = SSL_CTX_get_info_callback(ctx);
	int broker_ctx = SSL_is_server(ssl) && settings.broker &&
			 SSL_CTX_get_ex_data(ctx, ctx_marker_index) == &BROKER_CTX;
	if (context && (!own || broker_ctx))
		context(ssl, where, ret);
	if (own)
		own(ssl, where, ret);
}

static void info_callback(const SSL *const_ssl, int where, int ret)
{
	/* libssl hands the SSL it is working on; the shim configures that SSL. */
	SSL *ssl = (SSL *)const_ssl;
	if (SSL_is_server(ssl) && settings.broker && (where & SSL_CB_HANDSHAKE_START))
		guard_server_handshake(ssl);
	else if (SSL_is_server(ssl) && settings.broker && (where & SSL_CB_HANDSHAKE_DONE))
		check_server_handshake(ssl);
	else if (!SSL_is_server(ssl) && (where & SSL_CB_HANDSHAKE_START))
		guard_handshake_start(ssl);
	else if (!SSL_is_server(ssl) && (where & SSL_CB_HANDSHAKE_DONE)) {
		busy++;
		check_client(ssl);
		busy--;
	} else if (!SSL_is_server(ssl) && (where & SSL_CB_WRITE_ALERT) == SSL_CB_WRITE_ALERT &&
		   (ret >> 8) == SSL3_AL_FATAL) {
		/* The handshake fails here: said now, for the paths with no interposed function
		 * to say it after. */
		busy++;
		report_failure(ssl);
		busy--;
	}
	call_program_info_callbacks(ssl, where, ret);
}

/* The program's info callback is kept for info_callback to call. */
void SSL_set_info_callback(SSL *ssl, void (*cb)(const SSL *, int, int))
{
	REAL(SSL_set_info_callback);
	REAL(SSL_get_info_callback);
	if (busy || !ssl || real_SSL_get_info_callback(ssl) != info_callback) {
		real_SSL_set_info_callback(ssl, cb);
		return;
	}
	SSL_set_ex_data(ssl, program_info_index, (void *)cb);
}

void (*SSL_get_info_callback(const SSL *ssl))(const SSL *, int, int)
{
	REAL(SSL_get_info_callback);
	void (*cb)(const SSL *, int, int) = real_SSL_get_info_callback(ssl);
	if (busy || !ssl || cb != info_callback)
		return cb;
	return (void (*)(const SSL *, int, int))SSL_get_ex_data(ssl, program_info_index);
}

/* SSL_clear readies an SSL for another connection, maybe to another server: prepared again
 * at its next handshake. OpenSSL's DANE cannot be enabled twice on one SSL: if the records of
 * the last server are still on it, the SSL is refused (the program must make a new one). A
 * server SSL is readied for another client: the last one's refusal does not carry over (its
 * next handshake is checked afresh). */
int SSL_clear(SSL *ssl)
{
	REAL(SSL_clear);
	int rc = real_SSL_clear(ssl);
	if (busy || !ssl || rc != 1)
		return rc;
	busy++;
	ensure_setup();
	const void *marker = SSL_get_ex_data(ssl, ssl_marker_index);
	if (SSL_is_server(ssl)) {
		SSL_set_ex_data(ssl, ssl_marker_index, NULL);
	} else if (marker && marker != &REFUSED) {
		if (dane_enabled(ssl)) {
			SSL_set_ex_data(ssl, ssl_marker_index, (void *)&REFUSED);
			say("an SSL cleared for reuse keeps its last server's TLSA records: its next "
			    "connection is refused");
		} else {
			SSL_set_ex_data(ssl, ssl_marker_index, NULL);
		}
	}
	busy--;
	return rc;
}

SSL *SSL_new(SSL_CTX *ctx)
{
	REAL(SSL_new);
	if (busy || !ctx)
		return real_SSL_new(ctx);
	atomic_store(&program_made_ssl, 1);
	busy++;
	ensure_setup();
	/* A server that never configured verification: its contexts are set up before their
	 * first SSL copies the context's verify settings. */
	if (settings.broker && is_server_ctx(ctx, 0))
		enable_broker_ctx(ctx);
	else if (settings.device_identity && SSL_CTX_get_ssl_method(ctx) == TLS_client_method())
		enable_device_ctx(ctx);
	SSL *ssl = real_SSL_new(ctx);
	if (ssl)
		SSL_set_info_callback(ssl, info_callback);
	busy--;
	return ssl;
}

/* ---- programs that never use libssl ----------------------------------------------------- */

/* What the loaded objects say about TLS: whether one other than this shim and the core
 * library (which load libssl whatever the program does) needs libssl, and another TLS library
 * or another OpenSSL's libssl found, if any. */
struct tls_use {
	int needs_libssl;
	const char *other_tls;
	const char *other_libssl;
};

static const char *const OTHER_TLS[] = {"libgnutls", "libmbedtls", "libnss3", "libwolfssl"};
static const char *const OURS[] = {"libiotsafe_preload.so", "libiotsafe_dane.so", "/iotsafe.so",
				   "libssl.so", "libcrypto.so"};

static int names_any(const char *name, const char *const *parts, size_t n)
{
	for (size_t i = 0; name && i < n; i++)
		if (strstr(name, parts[i]))
			return 1;
	return 0;
}

/* Whether the object's dynamic section lists libssl.so.3 as needed. */
static int object_needs_libssl(struct dl_phdr_info *info)
{
	const ElfW(Dyn) *dyn = NULL;
	for (int i = 0; i < info->dlpi_phnum; i++)
		if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
			dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
	if (!dyn)
		return 0;
	const char *strtab = NULL;
	for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++)
		if (d->d_tag == DT_STRTAB)
			/* The dynamic linker relocated it in place, except where it could not. */
			strtab = (const char *)(d->d_un.d_ptr >= info->dlpi_addr
							? d->d_un.d_ptr
							: info->dlpi_addr + d->d_un.d_ptr);
	for (const ElfW(Dyn) *d = dyn; strtab && d->d_tag != DT_NULL; d++)
		if (d->d_tag == DT_NEEDED && !strcmp(strtab + d->d_un.d_val, "libssl.so.3"))
			return 1;
	return 0;
}

static int scan_object(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	struct tls_use *use = data;
	const char *name = info->dlpi_name;
	const char *base = name && strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
	if (names_any(name, OTHER_TLS, sizeof OTHER_TLS / sizeof *OTHER_TLS))
		use->other_tls = base;
	if (base && !strncmp(base, "libssl.so.", 10) && strcmp(base, "libssl.so.3"))
		use->other_libssl = base;
	if (!names_any(name, OURS, sizeof OURS / sizeof *OURS) && object_needs_libssl(info))
		use->needs_libssl = 1;
	return 0;
}

static struct tls_use tls_use_now(void)
{
	struct tls_use use = {0, NULL, NULL};
	dl_iterate_phdr(scan_object, &use);
	return use;
}

/* At start: a program built on another TLS library, or on another OpenSSL, gets no DANE. Under
 * the require policy (IOTSAFE_DANE_POLICY; dane-policy of openssl.cnf is not read this early,
 * so a policy set only there counts as require) it does not run, unless the launcher was given
 * --allow-no-dane (IOTSAFE_DANE_ALLOW_NO_DANE): this also stops such programs started by the
 * one the launcher started (a script's), which the launcher's own checks never saw. Else it
 * is told at once. */
__attribute__((constructor)) static void at_start(void)
{
	struct tls_use use = tls_use_now();
	const char *other = use.other_libssl
				? use.other_libssl
				: (use.other_tls && !use.needs_libssl ? use.other_tls : NULL);
	if (!other)
		return;
	const char *policy = getenv("IOTSAFE_DANE_POLICY");
	int require = !policy || strcasecmp(policy, "opportunistic") != 0;
	if (require && !is_true(getenv("IOTSAFE_DANE_ALLOW_NO_DANE"))) {
		fprintf(stderr,
			"iotsafe-run: %s uses %s, not OpenSSL 3's libssl: its TLS connections would "
			"get no DANE; not started under policy require (--allow-no-dane starts it "
			"anyway)\n",
			program_invocation_short_name, other);
		_exit(126);
	}
	if (!is_true(getenv("IOTSAFE_DANE_QUIET")))
		fprintf(stderr,
			"iotsafe-run: %s uses %s, not OpenSSL 3's libssl: its TLS connections get "
			"no DANE\n",
			program_invocation_short_name, other);
}

/* At exit: a program that never made an SSL and has nothing that needs libssl loaded (not
 * even late, as Python loads its _ssl module) did any TLS it did without DANE. */
__attribute__((destructor)) static void at_exit(void)
{
	if (atomic_load(&program_made_ssl))
		return;
	struct tls_use use = tls_use_now();
	if (!use.needs_libssl && !is_true(getenv("IOTSAFE_DANE_QUIET")))
		fprintf(stderr,
			"iotsafe-run: %s (pid %d) never used OpenSSL 3's libssl%s%s: no connection "
			"it made had DANE\n",
			program_invocation_short_name, (int)getpid(),
			use.other_tls ? "; it uses " : "", use.other_tls ? use.other_tls : "");
}
