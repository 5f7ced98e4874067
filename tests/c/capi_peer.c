/*
 * Both ends of DANE-authenticated TLS in one C program, as a C server (mosquitto, a preload
 * shim) and a C client use the library: every SSL_CTX and SSL is made here with OpenSSL's C
 * API (SSL_CTX_new, SSL_new), never by the Rust `openssl` crate. Used by tests/dane_capi_c.rs.
 *
 * Usage: capi_peer SERVER_CERT SERVER_KEY MISSING DEVICE_NAME STEP...
 *   MISSING: refuse | from-cert | optional (what the server does without a dane_clientid name)
 * Each STEP runs in order and prints one line:
 *   full=BASE      handshake; the client sends BASE.crt/BASE.key and DEVICE_NAME in the
 *                  extension, and authenticates the server by TLSA (ctx-level, port 8883)
 *   anon=BASE      the same without the extension
 *   perssl=BASE    the same with iotsafe_dane_ssl_enable on the client's SSL instead
 *   perssl-resume=BASE  as perssl=, offering the session saved by the last successful
 *                  handshake, set before iotsafe_dane_ssl_enable
 *   resume=BASE    as full=, offering the session saved by the last successful handshake
 *   anon12=BASE    as anon=, the client limited to TLS 1.2
 *   resume12=BASE  as anon12=, offering the session saved by the last successful handshake
 *   reneg=BASE+BASE2  as anon12= (without server authentication); then the client renegotiates (the server allows it) with
 *                  BASE2.crt/BASE2.key as its certificate; "after=" is the identity then
 *   reuse=BASE     as full=, on the server's one kept SSL, cleared (SSL_clear) after each use
 *   reuse-anon=BASE  as anon=, on that kept SSL
 *   server-cache   switches the server's session cache back on, with stateful tickets
 *                  (SSL_SESS_CACHE_SERVER, SSL_OP_NO_TICKET), as an application might
 *   host=NAME      the server name the clients ask for from now on (SNI, TLSA look-up)
 *   client-name=NAME  the name full=, resume= and reuse= clients send from now on
 *   domains=LIST   iotsafe_dane_set_allowed_domains
 *   ca-file=PATH   iotsafe_dane_set_ca_file
 *   verify=CERT[:CHAIN]  iotsafe_dane_verify_client on certificates read in C (with the
 *                  calling thread's iotsafe_dane_last_reason)
 *   queries        iotsafe_dane_queries_sent
 *   thread-reason  iotsafe_dane_last_reason(NULL), the calling thread's last reason
 *   anchor-roll=CERT  a shared handle on a copy of the trust anchor file verifies CERT; the file
 *                  is then replaced in place (its text changes, a root key roll-over) and a
 *                  second shared handle is made with the same arguments: queries each has sent
 *   shared=CERT    two handles from iotsafe_dane_shared (as a plugin and a shim would make) and
 *                  one from iotsafe_dane_new each verify CERT: DNS queries sent through each, and
 *                  through the second shared handle before its first use
 *   shared-ex=CERT iotsafe_dane_shared_ex: a handle with the default options shares the cache of
 *                  an iotsafe_dane_shared one (queries: first, plain), one with another look-up
 *                  time-out does not (other_timeout); then the arguments it refuses (1 when NULL
 *                  came back): an unknown flag, the AD bit with a trust anchor file, a time-out
 *                  above the maximum, the AD bit from a resolver not on loopback (its error)
 *   trust-ad=CERT  a handle trusting the AD bit of IOTSAFE_DANE_AD_RESOLVER verifies CERT: the
 *                  result, its reason and the queries sent
 *   flush          iotsafe_dane_clear_cache
 *   bad-new        iotsafe_dane_new with a bad resolver address (NULL and a last error)
 *   again          both dane_clientid calls a second time on the same contexts (refused)
 *   app-info       prints how many handshakes the application's own info callback, set on the
 *                  server's context before enabling, saw start
 *   info-after     sets that callback again after enabling (replacing the library's)
 *   again-other    the server call a second time with another code point (refused)
 *   race           two threads configure one fresh client SSL_CTX at once, 200 times; then a
 *                  handshake from the last one
 *   wait           prints "waiting" and reads one line from stdin
 * Handshake lines: "<step> server=ok|refused identity=NAME|- later=NAME|- after=NAME|-
 *                   verify=N reused=0|1 client=ok|failed
 *                   server_reason=R client_reason=R server_error=... client_error=..."
 *   (R: the iotsafe_dane_last_reason of each end's SSL, by name)
 * Environment: IOTSAFE_DANE_RESOLVER, IOTSAFE_DANE_TRUST_ANCHOR.
 * The server's records sit at _8883._tcp.broker.example.test (the name the clients ask for
 * unless host= changes it); the peers talk over a socketpair.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <iotsafe_dane.h>

#define HOST "broker.example.test"
#define PORT 8883

static iotsafe_dane *dane;
static SSL_CTX *server_ctx, *named_ctx, *anon_ctx, *anon12_ctx, *plain12_ctx, *perssl_ctx,
    *raced_ctx;
static SSL *kept; /* the server's SSL reused by reuse= steps */
static SSL_SESSION *saved;
static int missing;
static const char *host = HOST; /* what clients ask for */

enum client_kind { NAMED, ANON, ANON12, PLAIN12, PERSSL, RACED };

struct client_job {
	int fd;
	enum client_kind kind;
	char cert[512], key[512];
	int resume;
	char reneg_cert[512], reneg_key[512]; /* empty: no renegotiation */
	int ok, reused;
	iotsafe_dane_reason reason; /* of the client's SSL: its server authentication */
	char error[1024];
};

static void die(const char *what)
{
	fprintf(stderr, "capi_peer: %s: %s\n", what, iotsafe_dane_last_error());
	ERR_print_errors_fp(stderr);
	exit(2);
}

/* The last error of this thread, with OpenSSL's queue, on one line. */
static void describe(char *buf, size_t len)
{
	snprintf(buf, len, "%s", iotsafe_dane_last_error());
	unsigned long e;
	while ((e = ERR_get_error()) != 0) {
		size_t used = strlen(buf);
		if (used + 2 < len) {
			buf[used] = '|';
			ERR_error_string_n(e, buf + used + 1, len - used - 1);
		}
	}
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = ' ';
}

static void *run_client(void *arg)
{
	struct client_job *job = arg;
	SSL_CTX *ctx = job->kind == NAMED  ? named_ctx
		       : job->kind == ANON ? anon_ctx
		       : job->kind == ANON12 ? anon12_ctx
		       : job->kind == PLAIN12 ? plain12_ctx
		       : job->kind == RACED ? raced_ctx
				            : perssl_ctx;
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, job->fd);
	SSL_set_tlsext_host_name(ssl, host);
	/* The leaf, and any CA certificates after it in the file, as the chain. */
	if (SSL_use_certificate_chain_file(ssl, job->cert) != 1 ||
	    SSL_use_PrivateKey_file(ssl, job->key, SSL_FILETYPE_PEM) != 1) {
		describe(job->error, sizeof job->error);
		goto out;
	}
	/* The per-SSL configuration checks a session offered before it. */
	if (job->kind == PERSSL && job->resume && saved)
		SSL_set_session(ssl, saved);
	if (job->kind == PERSSL &&
	    iotsafe_dane_ssl_enable(dane, ssl, host, PORT, IOTSAFE_DANE_REQUIRE) != 1) {
		describe(job->error, sizeof job->error);
		goto out;
	}
	if (job->resume && saved && job->kind != PERSSL)
		SSL_set_session(ssl, saved);
	char byte;
	/* TLS 1.3: the server's verdict on our certificate (and its tickets) come after
	 * SSL_connect returns; the server's one byte of data proves it accepted us. */
	if (SSL_connect(ssl) != 1 || SSL_read(ssl, &byte, 1) != 1) {
		describe(job->error, sizeof job->error);
		goto out;
	}
	job->ok = 1;
	job->reused = SSL_session_reused(ssl);
	/* Post-handshake traffic: a TLS 1.3 KeyUpdate, then one byte the server reads. */
	if (SSL_version(ssl) == TLS1_3_VERSION)
		SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED);
	SSL_write(ssl, "x", 1);
	if (job->reneg_cert[0]) {
		/* Another certificate, in a renegotiation on the same connection. */
		if (SSL_use_certificate_chain_file(ssl, job->reneg_cert) != 1 ||
		    SSL_use_PrivateKey_file(ssl, job->reneg_key, SSL_FILETYPE_PEM) != 1)
			die("renegotiation certificate");
		if (SSL_renegotiate(ssl) == 1 && SSL_do_handshake(ssl) == 1)
			SSL_write(ssl, "y", 1);
		ERR_clear_error();
	}
	if (saved)
		SSL_SESSION_free(saved);
	saved = SSL_get1_session(ssl);
	SSL_shutdown(ssl);
out:
	job->reason = iotsafe_dane_last_reason(ssl);
	SSL_free(ssl);
	close(job->fd);
	return NULL;
}

static void handshake(const char *step, enum client_kind kind, const char *base, int resume,
		      int reuse)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		die("socketpair");
	struct client_job job = {.fd = sv[1], .kind = kind, .resume = resume};
	char first[500]; /* leaves room for the suffixes */
	snprintf(first, sizeof first, "%s", base);
	char *second = strchr(first, '+');
	if (second) {
		*second++ = '\0';
		snprintf(job.reneg_cert, sizeof job.reneg_cert, "%s.crt", second);
		snprintf(job.reneg_key, sizeof job.reneg_key, "%s.key", second);
	}
	snprintf(job.cert, sizeof job.cert, "%s.crt", first);
	snprintf(job.key, sizeof job.key, "%s.key", first);
	pthread_t client;
	if (pthread_create(&client, NULL, run_client, &job) != 0)
		die("pthread_create");

	if (reuse && !kept)
		kept = SSL_new(server_ctx);
	SSL *ssl = reuse ? kept : SSL_new(server_ctx);
	SSL_set_fd(ssl, sv[0]);
	if (second)
		SSL_set_options(ssl, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
	char identity[256] = "-", later[256] = "-", after[256] = "-", server_error[1024] = "";
	int accepted = SSL_accept(ssl) == 1;
	if (accepted) {
		if (iotsafe_dane_peer_identity(ssl, identity, sizeof identity) != 1)
			snprintf(identity, sizeof identity, "-");
		SSL_write(ssl, "k", 1);
		char byte;
		/* After post-handshake messages, the identity is still the handshake's. */
		if (SSL_read(ssl, &byte, 1) == 1 &&
		    iotsafe_dane_peer_identity(ssl, later, sizeof later) != 1)
			snprintf(later, sizeof later, "-");
		/* The client's renegotiation runs inside this read; "y" once it succeeded. */
		if (second && SSL_read(ssl, &byte, 1) == 1 &&
		    iotsafe_dane_peer_identity(ssl, after, sizeof after) != 1)
			snprintf(after, sizeof after, "-");
		if (second)
			describe(server_error, sizeof server_error);
		SSL_read(ssl, &byte, 1); /* until the client closes */
		SSL_shutdown(ssl);
	} else {
		/* Why the client was refused. */
		char unused[256];
		iotsafe_dane_peer_identity(ssl, unused, sizeof unused);
		describe(server_error, sizeof server_error);
	}
	long verify = SSL_get_verify_result(ssl);
	int reused = SSL_session_reused(ssl);
	iotsafe_dane_reason server_reason = iotsafe_dane_last_reason(ssl);
	if (reuse) {
		if (SSL_clear(ssl) != 1)
			die("SSL_clear");
	} else {
		SSL_free(ssl);
	}
	close(sv[0]);
	pthread_join(client, NULL);
	ERR_clear_error();
	printf("%s server=%s identity=%s later=%s after=%s verify=%ld reused=%d client=%s "
	       "server_reason=%s client_reason=%s server_error=%s client_error=%s\n",
	       step, accepted ? "ok" : "refused", identity, later, after, verify, reused && job.reused,
	       job.ok ? "ok" : "failed", iotsafe_dane_reason_name(server_reason),
	       iotsafe_dane_reason_name(job.reason), server_error, job.error);
}

static X509 *read_cert(FILE *f)
{
	return PEM_read_X509(f, NULL, NULL, NULL);
}

static void verify_client(const char *step, char *spec, const char *name)
{
	char *chain_path = strchr(spec, ':');
	if (chain_path)
		*chain_path++ = '\0';
	FILE *f = fopen(spec, "r");
	if (!f)
		die(spec);
	X509 *leaf = read_cert(f);
	fclose(f);
	STACK_OF(X509) *chain = NULL;
	if (chain_path) {
		chain = sk_X509_new_null();
		FILE *c = fopen(chain_path, "r");
		if (!c)
			die(chain_path);
		X509 *x;
		while ((x = read_cert(c)) != NULL)
			sk_X509_push(chain, x);
		fclose(c);
		ERR_clear_error();
	}
	int rc = iotsafe_dane_verify_client(dane, leaf, chain, name);
	/* No SSL: the reason of this thread's last call. */
	iotsafe_dane_reason reason = iotsafe_dane_last_reason(NULL);
	char error[1024];
	describe(error, sizeof error);
	printf("%s rc=%d reason=%s error=%s\n", step, rc, iotsafe_dane_reason_name(reason),
	       rc == 1 ? "" : error);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
}

/* Like verify_client, by iotsafe_dane_verify_client_ttl: also how long the verdict holds. */
static void verify_ttl(const char *step, const char *path, const char *name)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die(path);
	X509 *leaf = read_cert(f);
	fclose(f);
	uint32_t valid_for = 12345;
	int rc = iotsafe_dane_verify_client_ttl(dane, leaf, NULL, name, &valid_for);
	printf("%s rc=%d valid_for=%u reason=%s\n", step, rc, (unsigned)valid_for,
	       iotsafe_dane_reason_name(iotsafe_dane_last_reason(NULL)));
	X509_free(leaf);
}

/* Like verify_ttl, by iotsafe_dane_verify_client_within with a budget of 5 s of DNS. */
static void verify_within(const char *step, const char *path, const char *name)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die(path);
	X509 *leaf = read_cert(f);
	fclose(f);
	uint32_t valid_for = 12345;
	int rc = iotsafe_dane_verify_client_within(dane, leaf, NULL, name, &valid_for, 5000);
	printf("%s rc=%d valid_for=%u reason=%s\n", step, rc, (unsigned)valid_for,
	       iotsafe_dane_reason_name(iotsafe_dane_last_reason(NULL)));
	X509_free(leaf);
}

/* "FORMS:PATH": the identities of the certificate at PATH of the forms FORMS (a number),
 * then what a too small buffer gives. */
static void identities(const char *step, char *spec)
{
	char *path = strchr(spec, ':');
	if (!path)
		die("identities needs FORMS:PATH");
	*path++ = '\0';
	unsigned forms = (unsigned)strtoul(spec, NULL, 0);
	FILE *f = fopen(path, "r");
	if (!f)
		die(path);
	X509 *cert = read_cert(f);
	fclose(f);
	printf("%s", step);
	char name[256];
	size_t i = 0;
	int rc;
	while ((rc = iotsafe_dane_cert_identity(cert, forms, i, name, sizeof name)) == 1) {
		printf(" %zu=%s", i, name);
		i++;
	}
	printf(" end=%d", rc);
	char tiny[4];
	printf(" tiny=%d", iotsafe_dane_cert_identity(cert, forms, 0, tiny, sizeof tiny));
	printf(" error=%s\n", iotsafe_dane_last_error());
	X509_free(cert);
}

/* Verifies the device certificate at `path` through `d` and returns the DNS queries its
 * resolver has sent by then (negative when not authenticated). */
static long long verify_through(iotsafe_dane *d, const char *path, const char *name)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die(path);
	X509 *leaf = read_cert(f);
	fclose(f);
	int rc = iotsafe_dane_verify_client(d, leaf, NULL, name);
	X509_free(leaf);
	return rc == 1 ? (long long)iotsafe_dane_queries_sent(d) : -1;
}

static void shared(const char *step, const char *path, const char *name)
{
	const char *resolver = getenv("IOTSAFE_DANE_RESOLVER");
	const char *anchor = getenv("IOTSAFE_DANE_TRUST_ANCHOR");
	iotsafe_dane *plugin = iotsafe_dane_shared(resolver, anchor);
	iotsafe_dane *shim = iotsafe_dane_shared(resolver, anchor);
	iotsafe_dane *own = iotsafe_dane_new(resolver, anchor);
	if (!plugin || !shim || !own)
		die("iotsafe_dane_shared");
	long long first = verify_through(plugin, path, name);
	/* What the shim's handle has sent before it was ever used. */
	unsigned long long shim_before = iotsafe_dane_queries_sent(shim);
	long long second = verify_through(shim, path, name);
	long long separate = verify_through(own, path, name);
	printf("%s first=%lld shim_before=%llu second=%lld separate=%lld\n", step, first, shim_before,
	       second, separate);
	iotsafe_dane_free(plugin);
	iotsafe_dane_free(shim);
	iotsafe_dane_free(own);
}

/* 1 when iotsafe_dane_shared_ex refuses these arguments (and frees what it made otherwise). */
static int shared_ex_refused(const char *resolver, const char *anchor, unsigned flags,
			     unsigned timeout_ms)
{
	iotsafe_dane *d = iotsafe_dane_shared_ex(resolver, anchor, flags, timeout_ms);
	iotsafe_dane_free(d);
	return d == NULL;
}

static void shared_ex(const char *step, const char *path, const char *name)
{
	const char *resolver = getenv("IOTSAFE_DANE_RESOLVER");
	const char *anchor = getenv("IOTSAFE_DANE_TRUST_ANCHOR");
	iotsafe_dane *plain = iotsafe_dane_shared(resolver, anchor);
	iotsafe_dane *defaults = iotsafe_dane_shared_ex(resolver, anchor, 0, 0);
	iotsafe_dane *other = iotsafe_dane_shared_ex(resolver, anchor, 0, 2000);
	if (!plain || !defaults || !other)
		die("iotsafe_dane_shared_ex");
	long long first = verify_through(plain, path, name);
	long long through_defaults = verify_through(defaults, path, name);
	long long other_timeout = verify_through(other, path, name);
	int bad_flag = shared_ex_refused(resolver, anchor, 2, 0);
	int ad_with_anchor = shared_ex_refused("127.0.0.1:53", anchor, IOTSAFE_DANE_TRUST_AD, 0);
	int too_long =
	    shared_ex_refused(resolver, anchor, 0, IOTSAFE_DANE_MAX_LOOKUP_TIMEOUT_MS + 1);
	int ad_remote = shared_ex_refused("192.0.2.1:53", NULL, IOTSAFE_DANE_TRUST_AD, 0);
	printf("%s first=%lld plain=%lld other_timeout=%lld bad_flag=%d ad_with_anchor=%d "
	       "too_long=%d ad_remote=%d error=%s\n",
	       step, first, through_defaults, other_timeout, bad_flag, ad_with_anchor, too_long,
	       ad_remote, iotsafe_dane_last_error());
	iotsafe_dane_free(plain);
	iotsafe_dane_free(defaults);
	iotsafe_dane_free(other);
}

static void trust_ad(const char *step, const char *path, const char *name)
{
	iotsafe_dane *d =
	    iotsafe_dane_shared_ex(getenv("IOTSAFE_DANE_AD_RESOLVER"), NULL, IOTSAFE_DANE_TRUST_AD, 0);
	if (!d)
		die("iotsafe_dane_shared_ex (trust AD)");
	long long queries = verify_through(d, path, name);
	printf("%s rc=%d reason=%s queries=%lld\n", step, queries >= 0,
	       iotsafe_dane_reason_name(iotsafe_dane_last_reason(NULL)), queries);
	iotsafe_dane_free(d);
}

static void copy_file(const char *from, const char *to, const char *extra)
{
	FILE *in = fopen(from, "r"), *out = fopen(to, "w");
	if (!in || !out)
		die("copy trust anchor");
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		fwrite(buf, 1, n, out);
	fputs(extra, out);
	fclose(in);
	fclose(out);
}

static void anchor_roll(const char *step, const char *path, const char *name)
{
	const char *resolver = getenv("IOTSAFE_DANE_RESOLVER");
	const char *anchor = getenv("IOTSAFE_DANE_TRUST_ANCHOR");
	char copy[] = "/tmp/capi_peer_anchor_XXXXXX";
	int fd = mkstemp(copy);
	if (fd < 0 || !anchor)
		die("anchor copy");
	close(fd);
	copy_file(anchor, copy, "");
	iotsafe_dane *before = iotsafe_dane_shared(resolver, copy);
	if (!before)
		die("iotsafe_dane_shared");
	long long first = verify_through(before, path, name);
	/* The same keys, another text: as a rolled trust anchor file is. */
	copy_file(anchor, copy, "; replaced in place\n");
	iotsafe_dane *after = iotsafe_dane_shared(resolver, copy);
	if (!after)
		die("iotsafe_dane_shared");
	unsigned long long after_before_use = iotsafe_dane_queries_sent(after);
	long long second = verify_through(after, path, name);
	printf("%s first=%lld after_before_use=%llu second=%lld\n", step, first, after_before_use,
	       second);
	iotsafe_dane_free(before);
	iotsafe_dane_free(after);
	unlink(copy);
}

static SSL_CTX *client_ctx(const char *name, int server_auth)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		die("SSL_CTX_new");
	if (server_auth &&
	    iotsafe_dane_ctx_enable_server_auth(dane, ctx, PORT, IOTSAFE_DANE_REQUIRE) != 1)
		die("iotsafe_dane_ctx_enable_server_auth");
	if (name && iotsafe_dane_ctx_enable_clientid_client(ctx, name, 0) != 1)
		die("iotsafe_dane_ctx_enable_clientid_client");
	return ctx;
}

static int app_handshake_starts;

/* An application's own info callback (counting handshakes), as servers set for logging. */
static void app_info(const SSL *ssl, int where, int ret)
{
	(void)ssl;
	(void)ret;
	if (where & SSL_CB_HANDSHAKE_START)
		__atomic_add_fetch(&app_handshake_starts, 1, __ATOMIC_SEQ_CST);
}

struct race_job {
	pthread_barrier_t *start;
	SSL_CTX *ctx;
	const char *name;
	int rc;
};

static void *configure_server_auth(void *arg)
{
	struct race_job *job = arg;
	pthread_barrier_wait(job->start);
	job->rc = iotsafe_dane_ctx_enable_server_auth(dane, job->ctx, PORT, IOTSAFE_DANE_REQUIRE);
	return NULL;
}

static void *configure_clientid(void *arg)
{
	struct race_job *job = arg;
	pthread_barrier_wait(job->start);
	job->rc = iotsafe_dane_ctx_enable_clientid_client(job->ctx, job->name, 0);
	return NULL;
}

/* Two threads configure one fresh context at the same moment, many times over: every call must
 * succeed and the last context must work (both configurations kept alive). */
static void race(const char *step, const char *base, const char *name)
{
	int failed = 0;
	for (int round = 0; round < 200; round++) {
		SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
		pthread_barrier_t start;
		pthread_barrier_init(&start, NULL, 2);
		struct race_job a = {.start = &start, .ctx = ctx, .name = name};
		struct race_job b = a;
		pthread_t ta, tb;
		pthread_create(&ta, NULL, configure_server_auth, &a);
		pthread_create(&tb, NULL, configure_clientid, &b);
		pthread_join(ta, NULL);
		pthread_join(tb, NULL);
		pthread_barrier_destroy(&start);
		failed += a.rc != 1 || b.rc != 1;
		SSL_CTX_free(raced_ctx);
		raced_ctx = ctx;
	}
	printf("%s-config failed=%d\n", step, failed);
	fflush(stdout);
	handshake(step, RACED, base, 0, 0);
}

static int missing_mode(const char *s)
{
	if (strcmp(s, "refuse") == 0)
		return IOTSAFE_DANE_CLIENTID_REFUSE;
	if (strcmp(s, "from-cert") == 0)
		return IOTSAFE_DANE_CLIENTID_FROM_CERT;
	if (strcmp(s, "optional") == 0)
		return IOTSAFE_DANE_CLIENTID_OPTIONAL;
	fprintf(stderr, "capi_peer: bad MISSING %s\n", s);
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s SERVER_CERT SERVER_KEY MISSING DEVICE_NAME STEP...\n",
			argv[0]);
		return 2;
	}
	const char *device_name = argv[4];
	/* A peer that hangs up must not kill the program (as in any server). */
	signal(SIGPIPE, SIG_IGN);
	dane = iotsafe_dane_new(getenv("IOTSAFE_DANE_RESOLVER"), getenv("IOTSAFE_DANE_TRUST_ANCHOR"));
	if (!dane)
		die("iotsafe_dane_new");

	server_ctx = SSL_CTX_new(TLS_server_method());
	if (!server_ctx || SSL_CTX_use_certificate_file(server_ctx, argv[1], SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_use_PrivateKey_file(server_ctx, argv[2], SSL_FILETYPE_PEM) != 1)
		die("server certificate");
	/* As servers that resume sessions of verified clients do. */
	SSL_CTX_set_session_id_context(server_ctx, (const unsigned char *)"capi_peer", 9);
	SSL_CTX_set_info_callback(server_ctx, app_info);
	missing = missing_mode(argv[3]);
	if (iotsafe_dane_ctx_enable_clientid_server(dane, server_ctx, 0, missing) != 1)
		die("iotsafe_dane_ctx_enable_clientid_server");

	named_ctx = client_ctx(device_name, 1);
	anon_ctx = client_ctx(NULL, 1);
	anon12_ctx = client_ctx(NULL, 1);
	SSL_CTX_set_max_proto_version(anon12_ctx, TLS1_2_VERSION);
	/* No server authentication: the client side of DANE does not renegotiate. */
	plain12_ctx = client_ctx(NULL, 0);
	SSL_CTX_set_max_proto_version(plain12_ctx, TLS1_2_VERSION);
	perssl_ctx = client_ctx(device_name, 0);

	for (int i = 5; i < argc; i++) {
		char *step = argv[i];
		char *value = strchr(step, '=');
		if (value)
			*value++ = '\0';
		if (strcmp(step, "full") == 0 && value)
			handshake(step, NAMED, value, 0, 0);
		else if (strcmp(step, "anon") == 0 && value)
			handshake(step, ANON, value, 0, 0);
		else if (strcmp(step, "perssl") == 0 && value)
			handshake(step, PERSSL, value, 0, 0);
		else if (strcmp(step, "perssl-resume") == 0 && value)
			handshake(step, PERSSL, value, 1, 0);
		else if (strcmp(step, "resume") == 0 && value)
			handshake(step, NAMED, value, 1, 0);
		else if (strcmp(step, "anon12") == 0 && value)
			handshake(step, ANON12, value, 0, 0);
		else if (strcmp(step, "resume12") == 0 && value)
			handshake(step, ANON12, value, 1, 0);
		else if (strcmp(step, "reneg") == 0 && value)
			handshake(step, PLAIN12, value, 0, 0);
		else if (strcmp(step, "reuse") == 0 && value)
			handshake(step, NAMED, value, 0, 1);
		else if (strcmp(step, "reuse-anon") == 0 && value)
			handshake(step, ANON, value, 0, 1);
		else if (strcmp(step, "race") == 0 && value)
			race(step, value, device_name);
		else if (strcmp(step, "app-info") == 0)
			printf("app-info starts=%d\n", app_handshake_starts);
		else if (strcmp(step, "info-after") == 0) {
			SSL_CTX_set_info_callback(server_ctx, app_info);
			printf("info-after\n");
		} else if (strcmp(step, "server-cache") == 0) {
			SSL_CTX_set_session_cache_mode(server_ctx, SSL_SESS_CACHE_SERVER);
			SSL_CTX_set_options(server_ctx, SSL_OP_NO_TICKET);
			printf("server-cache\n");
		} else if (strcmp(step, "again-other") == 0) {
			int server =
			    iotsafe_dane_ctx_enable_clientid_server(dane, server_ctx, 0xFFDB, missing);
			printf("again-other server=%d error=%s\n", server, iotsafe_dane_last_error());
			ERR_clear_error();
		}
		else if (strcmp(step, "host") == 0 && value) {
			host = value;
			printf("host=%s\n", host);
		} else if (strcmp(step, "client-name") == 0 && value) {
			SSL_CTX_free(named_ctx);
			named_ctx = client_ctx(value, 1);
			printf("client-name=%s\n", value);
		} else if (strcmp(step, "domains") == 0 && value)
			printf("domains rc=%d\n", iotsafe_dane_set_allowed_domains(dane, value));
		else if (strcmp(step, "ca-file") == 0 && value)
			printf("ca-file rc=%d\n", iotsafe_dane_set_ca_file(dane, value));
		else if (strcmp(step, "verify") == 0 && value)
			verify_client(step, value, device_name);
		else if (strcmp(step, "verify-ttl") == 0 && value)
			verify_ttl(step, value, device_name);
		else if (strcmp(step, "verify-within") == 0 && value)
			verify_within(step, value, device_name);
		else if (strcmp(step, "identities") == 0 && value)
			identities(step, value);
		else if (strcmp(step, "flush") == 0)
			printf("flush rc=%d\n", iotsafe_dane_clear_cache(dane));
		else if (strcmp(step, "shared") == 0 && value)
			shared(step, value, device_name);
		else if (strcmp(step, "shared-ex") == 0 && value)
			shared_ex(step, value, device_name);
		else if (strcmp(step, "trust-ad") == 0 && value)
			trust_ad(step, value, device_name);
		else if (strcmp(step, "anchor-roll") == 0 && value)
			anchor_roll(step, value, device_name);
		else if (strcmp(step, "thread-reason") == 0)
			printf("thread-reason=%s\n",
			       iotsafe_dane_reason_name(iotsafe_dane_last_reason(NULL)));
		else if (strcmp(step, "queries") == 0)
			printf("queries=%llu\n", (unsigned long long)iotsafe_dane_queries_sent(dane));
		else if (strcmp(step, "bad-new") == 0) {
			iotsafe_dane *bad = iotsafe_dane_new("not an address", NULL);
			printf("bad-new null=%d error=%s\n", bad == NULL, iotsafe_dane_last_error());
			iotsafe_dane_free(bad);
		} else if (strcmp(step, "again") == 0) {
			int server = iotsafe_dane_ctx_enable_clientid_server(dane, server_ctx, 0, missing);
			char error[512];
			snprintf(error, sizeof error, "%s", iotsafe_dane_last_error());
			int client = iotsafe_dane_ctx_enable_clientid_client(named_ctx, device_name, 0);
			printf("again server=%d client=%d error=%s\n", server, client, error);
			ERR_clear_error();
		} else if (strcmp(step, "wait") == 0) {
			printf("waiting\n");
			fflush(stdout);
			char line[64];
			if (!fgets(line, sizeof line, stdin))
				die("stdin closed while waiting");
		} else {
			fprintf(stderr, "capi_peer: bad step %s\n", argv[i]);
			return 2;
		}
		fflush(stdout);
	}

	if (saved)
		SSL_SESSION_free(saved);
	SSL_free(kept);
	SSL_CTX_free(raced_ctx);
	SSL_CTX_free(named_ctx);
	SSL_CTX_free(anon_ctx);
	SSL_CTX_free(anon12_ctx);
	SSL_CTX_free(plain12_ctx);
	SSL_CTX_free(perssl_ctx);
	SSL_CTX_free(server_ctx);
	iotsafe_dane_free(dane);
	iotsafe_dane_free(NULL);
	return 0;
}
