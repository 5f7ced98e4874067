/* iotsafe_mosquitto: a mosquitto 2.0 plugin (interface version 5) that admits a device by the
 * DNSSEC-validated TLSA records at the device name its certificate carries, and kicks a live
 * session once that record is gone, no longer matches, or turns bogus.
 *
 * A thin adapter over libiotsafe_dane (its C API, include/iotsafe_dane.h): the resolver and its
 * cache are the process-wide ones of iotsafe_dane_shared_ex, shared with anything else in the
 * broker process that uses the library.
 *
 * Threads: mosquitto calls every callback on its one broker thread. Authentication at CONNECT
 * is synchronous (mosquitto 2.0 has no delayed authentication), so a cold CONNECT costs the
 * broker one bounded look-up (plugin_opt_lookup_timeout_ms). Re-validation of live sessions runs
 * on worker threads of this plugin; the broker thread only collects their verdicts on
 * MOSQ_EVT_TICK and kicks there (mosquitto's functions are not thread-safe). An identity whose
 * verdict is older than its TTL + revalidate_seconds counts as unverified whether or not ticks
 * or the worker keep up: its publishes and subscriptions are denied (fail closed).
 *
 * Options (plugin_opt_<key> <value>), see README "Broker operators":
 *   allowed_domains      required: comma-separated domains the device names must be in
 *   resolver             ADDR:PORT of the DNS server (default 127.0.0.1:53)
 *   trust_anchor         file of root DNSKEY/DS lines (default: the IANA root keys)
 *   trust_ad             true: take the AD bit of a validating resolver on loopback
 *   lookup_timeout_ms    the longest one look-up may take (default 5000)
 *   identity_forms       which SAN forms are device names: device,plain,service (default
 *                        device,plain)
 *   revalidate_seconds   grace after a record's TTL for its re-validation (default 60)
 *   username             device (default: the device name becomes the MQTT username) or keep
 *                        (the client's own username stays; a client that sent none gets the
 *                        device name; not together with acl_defer true: the kept username is
 *                        unverified)
 *   client_id            device (default: the MQTT client id must be the device name, or it
 *                        followed by "/" and anything) or any
 *   cafile               the CA certificates for usages 2 and 0 (the listener's cafile)
 *   ca_discovery         a domain where the registry publishes its CA certificates as TLSA
 *                        0 0 0 / 2 0 0: warn when a CA of cafile is no longer published there
 *   defer_without_certificate  true: clients without a certificate are left to other plugins
 *   acl_defer            true: publishes/subscribes of admitted devices are left to the next
 *                        ACL check (an acl_file keyed on the device name)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include <iotsafe_dane.h>

#define LOG "iotsafe: "
/* The most device names of one certificate that are looked up (as the library's own
 * from-certificate mode). */
#define MAX_NAMES 8
#define NAME_LEN 256
/* Admitted identities by client: an ACL check (every publish) looks one up. */
#define BUCKETS 4096
/* The longest plugin_opt_allowed_domains and plugin_opt_identity_forms (refused at start when
 * longer, never cut short). */
#define DOMAINS_LEN 1024
#define FORMS_LEN 128
/* How often the workers look for identities due for re-validation. */
#define WORKER_POLL_MS 100
/* Re-validation workers: FAST_WORKERS for names that answered last time, each look-up cut
 * short at fast_budget_ms, and one for names that did not, with the whole look-up time-out
 * (see "re-validation" below). */
#define FAST_WORKERS 3
#define WORKERS (FAST_WORKERS + 1)

enum username_mode { USERNAME_DEVICE, USERNAME_KEEP };
/* Whether the MQTT client id is bound to the device name: mosquitto hands a client id's session
 * (its subscriptions, queued messages) to whoever connects with it next and disconnects the
 * holder, so an unbound id lets any admitted device take over another's session. */
enum client_id_mode { CLIENT_ID_DEVICE, CLIENT_ID_ANY };

struct config {
	const char *resolver;
	const char *trust_anchor;
	bool trust_ad;
	const char *allowed_domains;
	unsigned lookup_timeout_ms;
	unsigned forms;
	unsigned revalidate_s;
	enum username_mode username;
	enum client_id_mode client_id;
	const char *cafile;
	const char *ca_discovery;
	bool defer_without_certificate;
	bool acl_defer;
};

/* One admitted client. `client` is the broker's object for the connection (forgotten on
 * MOSQ_EVT_DISCONNECT); `serial` tells a re-validation result which admission it is for. */
struct identity {
	struct identity *next;
	const struct mosquitto *client;
	uint64_t serial;
	char *client_id;
	char name[NAME_LEN];
	X509 *cert;
	double next_check;  /* monotonic seconds: when a worker re-validates */
	double deadline;    /* past this without a fresh verdict: unverified */
	bool checking;      /* a worker has it */
	bool slow;          /* its last look-up gave no answer within the fast budget */
	unsigned no_answers; /* look-ups in a row that gave no answer with the whole time-out */
	char *revoked;      /* why, once a re-validation refused */
};

/* A connected client without a certificate (left to the other plugins at CONNECT, or refused
 * and about to be disconnected): at a reload it is answered as at CONNECT, while any other
 * client without a certificate is an offline session (see reload_check). One entry per live
 * connection, from its CONNECT to its MOSQ_EVT_DISCONNECT, so the set needs no bound of its
 * own. */
struct live_client {
	struct live_client *next;
	const struct mosquitto *client;
};

struct plugin {
	mosquitto_plugin_id_t *id;
	struct config cfg;
	iotsafe_dane *dane;
	STACK_OF(X509) *chain; /* the cafile's certificates, for DANE-TA records */
	pthread_mutex_t lock;  /* guards everything below */
	pthread_cond_t wake;
	struct identity *identities[BUCKETS];
	struct live_client *without_certificate[BUCKETS];
	/* The identity of the client being disconnected right now: mosquitto publishes its will
	 * (an ACL-checked publish) just after MOSQ_EVT_DISCONNECT. Freed by the next callback. */
	struct identity *leaving;
	uint64_t next_serial;
	/* Monotonic seconds: no identity is due a kick before this (-INFINITY: a re-validation
	 * refused one). mosquitto 2.0.11 ticks after every pass of its loop, several times per
	 * CONNECT: the tick scans the table only when this has passed. */
	double next_kick_scan;
	double next_ca_check;  /* monotonic seconds: when the worker checks the CAs again */
	char *ca_warning;      /* for the broker thread to log (the worker does not log) */
	/* Set by MOSQ_EVT_RELOAD, cleared by the next tick: the basic-auth calls in between are
	 * mosquitto re-checking the clients it knows, not CONNECTs. Broker thread only. */
	bool reloading;
	bool stopping;
	struct worker {
		struct plugin *p;
		bool slow_lane;
		pthread_t thread;
		char name[NAME_LEN]; /* the device name it is checking ("" when none) */
	} workers[WORKERS];
	size_t workers_started;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The library's last error on one line (it writes a verification over several lines, the
 * later ones indented), for a log: each line break and the indentation after it become "; ". */
static void last_error_line(char *out, size_t len)
{
	const char *in = iotsafe_dane_last_error();
	size_t n = 0;
	while (*in && n + 2 < len) {
		if (*in == '\n') {
			while (in[1] == ' ' || in[1] == '\t')
				in++;
			out[n++] = ';';
			out[n++] = ' ';
		} else {
			out[n++] = *in;
		}
		in++;
	}
	out[n] = '\0';
}

/* ---- options ---------------------------------------------------------------------------- */

static int parse_bool(const char *key, const char *value, bool *out)
{
	if (strcmp(value, "true") == 0)
		*out = true;
	else if (strcmp(value, "false") == 0)
		*out = false;
	else {
		mosquitto_log_printf(MOSQ_LOG_ERR, LOG "plugin_opt_%s %s: expected true or false",
				     key, value);
		return -1;
	}
	return 0;
}

static int parse_uint(const char *key, const char *value, unsigned min, unsigned max,
		      unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(value, &end, 10);
	if (errno || end == value || *end || value[0] == '-' || n < min || n > max) {
		mosquitto_log_printf(MOSQ_LOG_ERR,
				     LOG "plugin_opt_%s %s: expected a whole number from %u to %u",
				     key, value, min, max);
		return -1;
	}
	*out = (unsigned)n;
	return 0;
}

static int parse_forms(const char *value, unsigned *out)
{
	char copy[FORMS_LEN];
	if (strlen(value) >= sizeof copy) {
		mosquitto_log_printf(MOSQ_LOG_ERR,
				     LOG "plugin_opt_identity_forms is longer than %zu characters",
				     sizeof copy - 1);
		return -1;
	}
	snprintf(copy, sizeof copy, "%s", value);
	unsigned forms = 0;
	char *save = NULL;
	for (char *f = strtok_r(copy, ", ", &save); f; f = strtok_r(NULL, ", ", &save)) {
		if (strcmp(f, "device") == 0)
			forms |= IOTSAFE_DANE_FORM_DEVICE;
		else if (strcmp(f, "plain") == 0)
			forms |= IOTSAFE_DANE_FORM_PLAIN;
		else if (strcmp(f, "service") == 0)
			forms |= IOTSAFE_DANE_FORM_SERVICE;
		else {
			mosquitto_log_printf(MOSQ_LOG_ERR,
					     LOG "plugin_opt_identity_forms %s: unknown form \"%s\" "
						 "(known: device, plain, service)",
					     value, f);
			return -1;
		}
	}
	if (!forms) {
		mosquitto_log_printf(MOSQ_LOG_ERR, LOG "plugin_opt_identity_forms is empty");
		return -1;
	}
	*out = forms;
	return 0;
}

static int parse_username(const char *value, enum username_mode *out)
{
	if (strcmp(value, "device") == 0)
		*out = USERNAME_DEVICE;
	else if (strcmp(value, "keep") == 0)
		*out = USERNAME_KEEP;
	else {
		mosquitto_log_printf(MOSQ_LOG_ERR,
				     LOG "plugin_opt_username %s: expected device or keep", value);
		return -1;
	}
	return 0;
}

static int parse_client_id(const char *value, enum client_id_mode *out)
{
	if (strcmp(value, "device") == 0)
		*out = CLIENT_ID_DEVICE;
	else if (strcmp(value, "any") == 0)
		*out = CLIENT_ID_ANY;
	else {
		mosquitto_log_printf(MOSQ_LOG_ERR,
				     LOG "plugin_opt_client_id %s: expected device or any", value);
		return -1;
	}
	return 0;
}

static int parse_option(struct config *c, const char *key, const char *value)
{
	if (strcmp(key, "resolver") == 0)
		c->resolver = value;
	else if (strcmp(key, "trust_anchor") == 0)
		c->trust_anchor = value;
	else if (strcmp(key, "trust_ad") == 0)
		return parse_bool(key, value, &c->trust_ad);
	else if (strcmp(key, "allowed_domains") == 0)
		c->allowed_domains = value;
	else if (strcmp(key, "lookup_timeout_ms") == 0)
		return parse_uint(key, value, 1, IOTSAFE_DANE_MAX_LOOKUP_TIMEOUT_MS,
				  &c->lookup_timeout_ms);
	else if (strcmp(key, "identity_forms") == 0)
		return parse_forms(value, &c->forms);
	else if (strcmp(key, "revalidate_seconds") == 0)
		return parse_uint(key, value, 1, 86400, &c->revalidate_s);
	else if (strcmp(key, "username") == 0)
		return parse_username(value, &c->username);
	else if (strcmp(key, "client_id") == 0)
		return parse_client_id(value, &c->client_id);
	else if (strcmp(key, "cafile") == 0)
		c->cafile = value;
	else if (strcmp(key, "ca_discovery") == 0)
		c->ca_discovery = value;
	else if (strcmp(key, "defer_without_certificate") == 0)
		return parse_bool(key, value, &c->defer_without_certificate);
	else if (strcmp(key, "acl_defer") == 0)
		return parse_bool(key, value, &c->acl_defer);
	else {
		mosquitto_log_printf(MOSQ_LOG_ERR, LOG "unknown option plugin_opt_%s", key);
		return -1;
	}
	return 0;
}

/* The device identity a certificate naming `name` in a SAN would have under `forms`, by the
 * library's own reading (lower case, no trailing dot): 1, 0 when it is none, -1 on an error. */
static int name_as_identity(const char *name, unsigned forms, char out[NAME_LEN])
{
	int rc = -1;
	X509 *probe = X509_new();
	GENERAL_NAMES *sans = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *san = GENERAL_NAME_new();
	ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
	if (probe && sans && san && dns && ASN1_STRING_set(dns, name, (int)strlen(name)) == 1) {
		GENERAL_NAME_set0_value(san, GEN_DNS, dns);
		dns = NULL;
		if (sk_GENERAL_NAME_push(sans, san) > 0) {
			san = NULL;
			if (X509_add1_ext_i2d(probe, NID_subject_alt_name, sans, 0, 0) == 1)
				rc = iotsafe_dane_cert_identity(probe, forms, 0, out, NAME_LEN);
		}
	}
	ASN1_IA5STRING_free(dns);
	GENERAL_NAME_free(san);
	GENERAL_NAMES_free(sans);
	X509_free(probe);
	ERR_clear_error();
	return rc;
}

/* Whether `name` (lower case, no trailing dot) is at or below one of the comma-separated
 * `domains`, label by label. */
static bool within_domains(const char *name, const char *domains)
{
	char copy[DOMAINS_LEN];
	snprintf(copy, sizeof copy, "%s", domains); /* never cut: parse_options checks the length */
	char *save = NULL;
	for (char *d = strtok_r(copy, ", ", &save); d; d = strtok_r(NULL, ", ", &save)) {
		size_t len = strlen(d);
		if (len && d[len - 1] == '.')
			d[--len] = '\0';
		size_t name_len = strlen(name);
		if (len == 0 || len > name_len || strcasecmp(name + name_len - len, d) != 0)
			continue;
		if (len == name_len || name[name_len - len - 1] == '.')
			return true;
	}
	return false;
}

/* The CA publication at plugin_opt_ca_discovery is a TLSA set of 2 0 0 records: were that name
 * a device identity, every certificate the registry CA issued naming it in a SAN (a device's
 * CSR can ask for it) would be admitted as that name. Refused at start. */
static int check_ca_discovery_name(const struct config *c)
{
	char name[NAME_LEN];
	char bare[NAME_LEN];
	snprintf(bare, sizeof bare, "%s", c->ca_discovery);
	size_t len = strlen(bare);
	if (len && bare[len - 1] == '.')
		bare[len - 1] = '\0';
	if (name_as_identity(bare, c->forms, name) != 1 || !within_domains(name, c->allowed_domains))
		return 0;
	mosquitto_log_printf(MOSQ_LOG_ERR,
			     LOG "plugin_opt_ca_discovery %s is a device name of plugin_opt_identity_forms "
				 "within plugin_opt_allowed_domains: a certificate of the registry CA "
				 "naming it would be admitted by the CA records published there; publish "
				 "the CAs at a name no accepted form reads as a device (e.g. "
				 "_device.<domain> without the service form)",
			     c->ca_discovery);
	return -1;
}

static int parse_options(struct config *c, struct mosquitto_opt *opts, int count)
{
	*c = (struct config){
	    .forms = IOTSAFE_DANE_FORM_DEVICE | IOTSAFE_DANE_FORM_PLAIN,
	    .revalidate_s = 60,
	    .username = USERNAME_DEVICE,
	    .client_id = CLIENT_ID_DEVICE,
	};
	for (int i = 0; i < count; i++) {
		const char *value = opts[i].value ? opts[i].value : "";
		if (parse_option(c, opts[i].key, value) != 0)
			return -1;
	}
	if (!c->allowed_domains || !*c->allowed_domains) {
		mosquitto_log_printf(MOSQ_LOG_ERR,
				     LOG "plugin_opt_allowed_domains is required: the domains whose "
					 "device names may connect (checked before any DNS query)");
		return -1;
	}
	if (strlen(c->allowed_domains) >= DOMAINS_LEN) {
		mosquitto_log_printf(MOSQ_LOG_ERR,
				     LOG "plugin_opt_allowed_domains is longer than %d characters: "
					 "list fewer domains (a parent domain covers its subdomains)",
				     DOMAINS_LEN - 1);
		return -1;
	}
	if (c->ca_discovery && !c->cafile) {
		mosquitto_log_printf(MOSQ_LOG_ERR,
				     LOG "plugin_opt_ca_discovery needs plugin_opt_cafile: the CAs "
					 "whose publication it checks");
		return -1;
	}
	if (c->ca_discovery && check_ca_discovery_name(c) != 0)
		return -1;
	if (c->username == USERNAME_KEEP && c->acl_defer) {
		/* The plugin admits at CONNECT, so no password_file ever checks the kept username,
		 * and a deferred ACL check (an acl_file keyed on names) would authorise by it. */
		mosquitto_log_printf(MOSQ_LOG_ERR,
				     LOG "plugin_opt_username keep and plugin_opt_acl_defer true exclude "
					 "each other: the kept username is the client's own, unverified, "
					 "and the deferred ACL checks would authorise by it");
		return -1;
	}
	if (c->trust_ad && c->trust_anchor) {
		mosquitto_log_printf(MOSQ_LOG_ERR,
				     LOG "plugin_opt_trust_ad true and plugin_opt_trust_anchor exclude "
					 "each other: validate in-process or trust the resolver, not both");
		return -1;
	}
	return 0;
}

/* ---- set-up ----------------------------------------------------------------------------- */

static STACK_OF(X509) *read_cafile(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		mosquitto_log_printf(MOSQ_LOG_ERR, LOG "plugin_opt_cafile %s: %s", path,
				     strerror(errno));
		return NULL;
	}
	STACK_OF(X509) *certs = sk_X509_new_null();
	X509 *x;
	while (certs && (x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL)
		sk_X509_push(certs, x);
	fclose(f);
	ERR_clear_error(); /* the end of the file */
	if (certs && sk_X509_num(certs) == 0) {
		mosquitto_log_printf(MOSQ_LOG_ERR, LOG "plugin_opt_cafile %s: no PEM certificate",
				     path);
		sk_X509_free(certs);
		return NULL;
	}
	return certs;
}

static int open_dane(struct plugin *p)
{
	const struct config *c = &p->cfg;
	unsigned flags = c->trust_ad ? IOTSAFE_DANE_TRUST_AD : 0;
	p->dane = iotsafe_dane_shared_ex(c->resolver, c->trust_anchor, flags, c->lookup_timeout_ms);
	if (!p->dane) {
		mosquitto_log_printf(MOSQ_LOG_ERR, LOG "resolver (plugin_opt_resolver %s): %s",
				     c->resolver ? c->resolver : "127.0.0.1:53",
				     iotsafe_dane_last_error());
		return -1;
	}
	if (iotsafe_dane_set_allowed_domains(p->dane, c->allowed_domains) != 1) {
		mosquitto_log_printf(MOSQ_LOG_ERR, LOG "plugin_opt_allowed_domains %s: %s",
				     c->allowed_domains, iotsafe_dane_last_error());
		return -1;
	}
	if (c->cafile) {
		p->chain = read_cafile(c->cafile);
		if (!p->chain || iotsafe_dane_set_ca_file(p->dane, c->cafile) != 1)
			return -1;
	}
	return 0;
}

/* ---- CA discovery ----------------------------------------------------------------------- */

/* Which CAs of plugin_opt_cafile are not published at plugin_opt_ca_discovery (each with the
 * reason), as one line for the log; NULL when all are (or discovery is off). */
static char *unpublished_cas(struct plugin *p)
{
	if (!p->cfg.ca_discovery)
		return NULL;
	char text[8192] = "";
	size_t used = 0;
	for (int i = 0; i < sk_X509_num(p->chain); i++) {
		X509 *ca = sk_X509_value(p->chain, i);
		if (iotsafe_dane_ca_published(p->dane, p->cfg.ca_discovery, ca) == 1)
			continue;
		char subject[256], why[2048];
		X509_NAME_oneline(X509_get_subject_name(ca), subject, sizeof subject);
		last_error_line(why, sizeof why);
		int n = snprintf(text + used, sizeof text - used,
				 "%sCA %s of plugin_opt_cafile %s is not published at %s (%s)",
				 used ? " || " : "", subject, p->cfg.cafile, p->cfg.ca_discovery, why);
		if (n > 0)
			used = used + (size_t)n < sizeof text ? used + (size_t)n : sizeof text - 1;
	}
	return used ? strdup(text) : NULL;
}

/* On the worker: checks the CAs once per revalidate_seconds, leaving a warning for the
 * broker thread. */
static void check_cas(struct plugin *p, double now)
{
	if (!p->cfg.ca_discovery || now < p->next_ca_check)
		return;
	p->next_ca_check = now + p->cfg.revalidate_s;
	pthread_mutex_unlock(&p->lock);
	char *warning = unpublished_cas(p);
	pthread_mutex_lock(&p->lock);
	if (warning) {
		free(p->ca_warning);
		p->ca_warning = warning;
	}
}

/* ---- the table of admitted identities (callers hold p->lock) ------------------------------ */

static void free_identity(struct identity *id)
{
	X509_free(id->cert);
	free(id->client_id);
	free(id->revoked);
	free(id);
}

static size_t bucket_index(const struct mosquitto *client)
{
	uintptr_t v = (uintptr_t)client;
	return ((v >> 4) ^ (v >> 16)) % BUCKETS;
}

static struct identity **bucket(struct plugin *p, const struct mosquitto *client)
{
	return &p->identities[bucket_index(client)];
}

static struct identity *find_identity(struct plugin *p, const struct mosquitto *client)
{
	for (struct identity *id = *bucket(p, client); id; id = id->next)
		if (id->client == client)
			return id;
	return NULL;
}

/* Takes the identity of `client` out of the table (NULL when it has none). */
static struct identity *detach_identity(struct plugin *p, const struct mosquitto *client)
{
	for (struct identity **at = bucket(p, client); *at; at = &(*at)->next) {
		if ((*at)->client == client) {
			struct identity *found = *at;
			*at = found->next;
			found->next = NULL;
			return found;
		}
	}
	return NULL;
}

static void forget_identity(struct plugin *p, const struct mosquitto *client)
{
	struct identity *gone = detach_identity(p, client);
	if (gone)
		free_identity(gone);
}

/* ---- live clients without a certificate (callers hold p->lock) ------------------------- */

static struct live_client **live_bucket(struct plugin *p, const struct mosquitto *client)
{
	return &p->without_certificate[bucket_index(client)];
}

static bool is_live_without_certificate(struct plugin *p, const struct mosquitto *client)
{
	for (struct live_client *c = *live_bucket(p, client); c; c = c->next)
		if (c->client == client)
			return true;
	return false;
}

/* False when out of memory: the caller refuses the client rather than let a reload take it
 * for an offline session. */
static bool remember_live(struct plugin *p, const struct mosquitto *client)
{
	if (is_live_without_certificate(p, client))
		return true;
	struct live_client *c = malloc(sizeof *c);
	if (!c)
		return false;
	c->client = client;
	c->next = *live_bucket(p, client);
	*live_bucket(p, client) = c;
	return true;
}

static void forget_live(struct plugin *p, const struct mosquitto *client)
{
	for (struct live_client **at = live_bucket(p, client); *at; at = &(*at)->next) {
		if ((*at)->client == client) {
			struct live_client *gone = *at;
			*at = gone->next;
			free(gone);
			return;
		}
	}
}

/* The identity being disconnected is only needed for its will, published at once. */
static void forget_leaving(struct plugin *p)
{
	if (p->leaving)
		free_identity(p->leaving);
	p->leaving = NULL;
}

/* The identity an ACL check of `client` is decided by: its admission, or, while it is being
 * disconnected (its will), the one it had. */
static struct identity *acl_identity(struct plugin *p, const struct mosquitto *client)
{
	struct identity *id = find_identity(p, client);
	if (id)
		return id;
	const char *client_id = mosquitto_client_id(client);
	if (p->leaving && p->leaving->client == client && client_id &&
	    strcmp(p->leaving->client_id, client_id) == 0)
		return p->leaving;
	return NULL;
}

/* Seconds after a verdict valid for `ttl` seconds until it is checked again: at most
 * revalidate_seconds, at the TTL when that is shorter (sooner costs no DNS: the answer is
 * cached), but never sooner than a quarter of revalidate_seconds (at least 1 s): a zone
 * publishing TTL 0 (answers the library does not cache) must not get a look-up a second. The
 * deadline (TTL + revalidate_seconds) keeps at least three quarters of revalidate_seconds
 * after the check. */
static unsigned check_again_s(const struct plugin *p, uint32_t ttl)
{
	unsigned floor_s = p->cfg.revalidate_s / 4 ? p->cfg.revalidate_s / 4 : 1;
	unsigned every = ttl > floor_s ? ttl : floor_s;
	return every < p->cfg.revalidate_s ? every : p->cfg.revalidate_s;
}

/* When the verdict given at `now`, valid for `ttl` seconds, is checked again, and when it
 * stops counting. */
static void schedule(struct plugin *p, struct identity *id, double now, uint32_t ttl)
{
	double valid = ttl > 0 ? ttl : 1;
	id->next_check = now + check_again_s(p, ttl);
	id->deadline = now + valid + p->cfg.revalidate_s;
	id->no_answers = 0;
	if (id->deadline < p->next_kick_scan)
		p->next_kick_scan = id->deadline;
}

static bool verified(const struct identity *id, double now)
{
	return !id->revoked && now <= id->deadline;
}

/* ---- CONNECT ---------------------------------------------------------------------------- */

/* Appends "NAME: REASON: the library's account" of the last refusal to `why`. */
static void append_refusal(char *why, size_t why_len, const char *name)
{
	size_t used = strlen(why);
	char line[2048];
	last_error_line(line, sizeof line);
	snprintf(why + used, why_len - used, "%s%s: %s: %s", used ? " || " : "", name,
		 iotsafe_dane_reason_name(iotsafe_dane_last_reason(NULL)), line);
}

/* Whether `client_id` may be used by the device `name` (plugin_opt_client_id device): the
 * name itself, or the name, "/" and anything (one device, several connections). */
static bool client_id_bound(const struct plugin *p, const char *client_id, const char *name)
{
	if (p->cfg.client_id == CLIENT_ID_ANY)
		return true;
	size_t len = strlen(name);
	return client_id && strncmp(client_id, name, len) == 0 &&
	       (client_id[len] == '\0' || client_id[len] == '/');
}

/* Verifies `cert` for each device name it carries that `client_id` is bound to (at most
 * MAX_NAMES, all of them within one look-up time-out); the first one authenticated goes to
 * `admitted` (with its TTL), else `why` says for each name why not. 1, 0, or -1 (an error). */
static int verify_names(struct plugin *p, X509 *cert, const char *client_id,
			char admitted[NAME_LEN], uint32_t *ttl, char *why, size_t why_len)
{
	char name[NAME_LEN];
	why[0] = '\0';
	int more = iotsafe_dane_cert_identity(cert, p->cfg.forms, MAX_NAMES, name, sizeof name);
	if (more == 1) {
		snprintf(why, why_len,
			 "TOO_MANY_IDENTITIES: the certificate names more than %d device names "
			 "(none looked up)",
			 MAX_NAMES);
		return 0;
	}
	double budget = (p->cfg.lookup_timeout_ms ? p->cfg.lookup_timeout_ms : 5000) / 1000.0;
	double give_up = now_s() + budget;
	int rc = 0;
	size_t i;
	for (i = 0; i < MAX_NAMES && now_s() < give_up; i++) {
		rc = iotsafe_dane_cert_identity(cert, p->cfg.forms, i, name, sizeof name);
		if (rc != 1)
			break;
		if (!client_id_bound(p, client_id, name)) {
			/* Refused before any look-up: no DNS for a client id it could not use. */
			size_t used = strlen(why);
			snprintf(why + used, why_len - used,
				 "%s%s: CLIENT_ID: the client id %s is not the device name (nor "
				 "%s/...), as plugin_opt_client_id device requires",
				 used ? " || " : "", name, client_id ? client_id : "(none)", name);
			continue;
		}
		/* What is left of the budget bounds this name's DNS: the names together never
		 * hold the broker's thread longer than one look-up time-out. */
		double left_ms = (give_up - now_s()) * 1000.0;
		unsigned budget_ms = left_ms < 1.0 ? 1u : (unsigned)left_ms;
		rc = iotsafe_dane_verify_client_within(p->dane, cert, p->chain, name, ttl,
						       budget_ms);
		if (rc == 1) {
			memcpy(admitted, name, NAME_LEN);
			return 1;
		}
		append_refusal(why, why_len, name);
	}
	if (more < 0 || rc < 0) {
		last_error_line(why, why_len);
		return -1;
	}
	if (i == 0)
		snprintf(why, why_len,
			 "NO_IDENTITY: the certificate has no SAN dNSName of the accepted forms "
			 "(plugin_opt_identity_forms)");
	return 0;
}

static void admit(struct plugin *p, struct mosquitto *client, const char *name, X509 *cert,
		  uint32_t ttl)
{
	struct identity *id = calloc(1, sizeof *id);
	const char *client_id = mosquitto_client_id(client);
	if (!id || !(id->client_id = strdup(client_id ? client_id : ""))) {
		free(id);
		return; /* never admitted: its ACL checks are denied */
	}
	id->client = client;
	snprintf(id->name, sizeof id->name, "%s", name);
	id->cert = cert;
	X509_up_ref(cert);
	pthread_mutex_lock(&p->lock);
	forget_leaving(p);
	forget_identity(p, client);
	id->serial = ++p->next_serial;
	schedule(p, id, now_s(), ttl);
	id->next = *bucket(p, client);
	*bucket(p, client) = id;
	pthread_mutex_unlock(&p->lock);
}

/* A client without a certificate, answered as at CONNECT: left to the other plugins with
 * defer_without_certificate, else refused. */
static int without_certificate(struct plugin *p, const struct mosquitto *client)
{
	if (p->cfg.defer_without_certificate)
		return MOSQ_ERR_PLUGIN_DEFER;
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
			     LOG "refused client %s from %s: NO_IDENTITY: no client certificate "
				 "(the listener needs require_certificate true)",
			     mosquitto_client_id(client), mosquitto_client_address(client));
	return MOSQ_ERR_AUTH;
}

/* A reload's re-check of a client mosquitto holds, answered without DNS: mosquitto 2.0.11
 * (mosquitto_security_apply_default) runs basic auth for every client it holds, offline
 * persistent sessions included (also those restored from its database at a restart, which
 * this plugin never saw), and disconnects each one refused, even one already disconnected,
 * which corrupts its session-expiry list and connection count. Connected devices keep the
 * verdicts they have: re-validation stays on the workers, and one whose deadline has passed
 * is kicked by the tick that follows. Connected clients without a certificate are answered as
 * at CONNECT (so password_file, asked after this plugin, can revoke one); offline sessions are
 * accepted. */
static int reload_check(struct plugin *p, struct mosquitto *client)
{
	X509 *cert = mosquitto_client_certificate(client);
	if (!cert) {
		/* Between the reload's checks and the tick, mosquitto 2.0.11 serves its websocket
		 * listeners (loop.c): a websocket client (an offline one has no websocket) may be
		 * a CONNECT arriving now, never seen by on_basic_auth. */
		pthread_mutex_lock(&p->lock);
		bool live = is_live_without_certificate(p, client) ||
			    mosquitto_client_protocol(client) == mp_websockets;
		pthread_mutex_unlock(&p->lock);
		if (live)
			return without_certificate(p, client);
		/* An offline session: refusing it would disconnect it a second time. Its ACL
		 * checks get no grant from this plugin (it is not in the identity table), and its
		 * next CONNECT is judged afresh. */
		return MOSQ_ERR_SUCCESS;
	}
	X509_free(cert);
	pthread_mutex_lock(&p->lock);
	bool admitted = find_identity(p, client) != NULL;
	pthread_mutex_unlock(&p->lock);
	if (admitted)
		return MOSQ_ERR_SUCCESS;
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
			     LOG "refused client %s from %s at the reload: connected with a "
				 "certificate but never admitted by this plugin",
			     mosquitto_client_id(client), mosquitto_client_address(client));
	return MOSQ_ERR_AUTH;
}

/* The username of an admitted device: its device name, or under username keep the one the
 * client sent. A client that sent none gets the device name all the same: mosquitto 2.0.11
 * disconnects every session without a username at a reload (its anonymous check comes before
 * any plugin), an offline one a second time. */
static int set_username(const struct plugin *p, struct mosquitto *client, const char *name)
{
	if (p->cfg.username == USERNAME_KEEP && mosquitto_client_username(client))
		return MOSQ_ERR_SUCCESS;
	return mosquitto_set_username(client, name);
}

/* A CONNECT without a certificate: answered by without_certificate, and the client
 * remembered as live until its MOSQ_EVT_DISCONNECT (which mosquitto 2.0.11 fires from
 * context__disconnect, for a refused CONNECT too). */
static int live_without_certificate(struct plugin *p, const struct mosquitto *client)
{
	pthread_mutex_lock(&p->lock);
	bool remembered = remember_live(p, client);
	pthread_mutex_unlock(&p->lock);
	if (!remembered) {
		mosquitto_log_printf(MOSQ_LOG_ERR,
				     LOG "refused client %s from %s: out of memory (no certificate)",
				     mosquitto_client_id(client), mosquitto_client_address(client));
		return MOSQ_ERR_NOMEM;
	}
	return without_certificate(p, client);
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	(void)event;
	struct plugin *p = userdata;
	struct mosquitto_evt_basic_auth *ev = event_data;
	if (p->reloading)
		return reload_check(p, ev->client);
	const char *client_id = mosquitto_client_id(ev->client);
	const char *address = mosquitto_client_address(ev->client);
	X509 *cert = mosquitto_client_certificate(ev->client);
	if (!cert)
		return live_without_certificate(p, ev->client);
	char name[NAME_LEN];
	char why[8192];
	uint32_t ttl = 0;
	int rc = verify_names(p, cert, client_id, name, &ttl, why, sizeof why);
	if (rc == 1 && set_username(p, ev->client, name) != MOSQ_ERR_SUCCESS) {
		snprintf(why, sizeof why, "%s: cannot set the username (out of memory?)", name);
		rc = -1;
	}
	if (rc == 1) {
		admit(p, ev->client, name, cert, ttl);
		const char *username = mosquitto_client_username(ev->client);
		mosquitto_log_printf(MOSQ_LOG_NOTICE,
				     LOG "admitted client %s from %s as %s (DNSSEC-secure TLSA matched); "
					 "username %s; answer valid %u s more, checked again within %u s",
				     client_id, address, name,
				     p->cfg.username == USERNAME_KEEP && username && strcmp(username, name)
					 ? "kept"
					 : name,
				     ttl, check_again_s(p, ttl));
	} else {
		mosquitto_log_printf(MOSQ_LOG_NOTICE, LOG "refused client %s from %s: %s", client_id,
				     address, why);
	}
	X509_free(cert);
	return rc == 1 ? MOSQ_ERR_SUCCESS : MOSQ_ERR_AUTH;
}

/* ---- publish/subscribe ------------------------------------------------------------------ */

static int on_acl_check(int event, void *event_data, void *userdata)
{
	(void)event;
	struct plugin *p = userdata;
	struct mosquitto_evt_acl_check *ev = event_data;
	pthread_mutex_lock(&p->lock);
	struct identity *id = acl_identity(p, ev->client);
	bool ok = id && verified(id, now_s());
	pthread_mutex_unlock(&p->lock);
	if (ok)
		return p->cfg.acl_defer ? MOSQ_ERR_PLUGIN_DEFER : MOSQ_ERR_SUCCESS;
	/* Clients without a certificate were left to other plugins at CONNECT: so are their
	 * publishes. Any other client was never admitted, or is no longer verified. */
	if (!id && p->cfg.defer_without_certificate) {
		X509 *cert = mosquitto_client_certificate(ev->client);
		X509_free(cert);
		if (!cert)
			return MOSQ_ERR_PLUGIN_DEFER;
	}
	return MOSQ_ERR_ACL_DENIED;
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	(void)event;
	struct plugin *p = userdata;
	struct mosquitto_evt_disconnect *ev = event_data;
	pthread_mutex_lock(&p->lock);
	forget_leaving(p);
	p->leaving = detach_identity(p, ev->client);
	forget_live(p, ev->client);
	pthread_mutex_unlock(&p->lock);
	return MOSQ_ERR_SUCCESS;
}

/* ---- re-validation: the worker verifies, the broker thread kicks -------------------------- */

/* Re-validation runs on WORKERS threads. Names whose look-ups stall (a zone whose server
 * stops answering after admission, maybe on purpose) must not hold up the others: every
 * identity has at least revalidate_seconds between being due and its deadline, so on the fast
 * lane a look-up may take at most a sixteenth of that (fast_budget_ms), and due identities are
 * taken in the order they fell due. A name that gives no answer within it moves to the slow
 * lane, one worker that tries it again with the whole look-up time-out, backing off (1, 2, 4,
 * ... s, with one last try before its deadline); one that answers there within the fast budget
 * moves back. No answer is no verdict either way: the identity counts until its deadline, and
 * is kicked then. One look-up serves every connection of a device name with the same
 * certificate (a name being checked is not taken again), and no identity is checked more often
 * than every quarter of revalidate_seconds (check_again_s), so many connections of one name,
 * or TTL 0, do not multiply the look-ups. Each pick and each verdict scans the table
 * (O(identities)). Left: names that answer just within the fast budget still take their turns
 * in order of falling due, so enough distinct slow names can delay the others. */

struct job {
	const struct mosquitto *client;
	uint64_t serial;
	uint64_t last_serial; /* the newest admission when the job was taken */
	char name[NAME_LEN];
	X509 *cert;
	unsigned budget_ms;
};

static unsigned full_budget_ms(const struct plugin *p)
{
	return p->cfg.lookup_timeout_ms ? p->cfg.lookup_timeout_ms : 5000;
}

static unsigned fast_budget_ms(const struct plugin *p)
{
	unsigned sixteenth = p->cfg.revalidate_s * 1000 / 16;
	unsigned budget = sixteenth < 100 ? 100 : sixteenth;
	return budget < full_budget_ms(p) ? budget : full_budget_ms(p);
}

/* Whether a worker is checking the device name `name` now. */
static bool name_in_check(const struct plugin *p, const char *name)
{
	for (size_t i = 0; i < WORKERS; i++)
		if (strcmp(p->workers[i].name, name) == 0)
			return true;
	return false;
}

/* Takes the identity of this lane that fell due first (marked as being checked, its name
 * noted for worker `w`). A name being checked is skipped: its verdict will be that of all its
 * connections (one look-up per name, however many connections a device holds). */
static bool take_due_job(struct plugin *p, struct worker *w, struct job *job, double now)
{
	struct identity *first = NULL;
	for (size_t b = 0; b < BUCKETS; b++)
		for (struct identity *id = p->identities[b]; id; id = id->next)
			if (!id->checking && !id->revoked && id->slow == w->slow_lane &&
			    id->next_check <= now &&
			    (!first || id->next_check < first->next_check) &&
			    !name_in_check(p, id->name))
				first = id;
	if (!first)
		return false;
	first->checking = true;
	memcpy(w->name, first->name, NAME_LEN);
	job->client = first->client;
	job->serial = first->serial;
	job->last_serial = p->next_serial;
	memcpy(job->name, first->name, NAME_LEN);
	job->cert = first->cert;
	X509_up_ref(first->cert);
	job->budget_ms = w->slow_lane ? full_budget_ms(p) : fast_budget_ms(p);
	return true;
}

static bool any_identity(const struct plugin *p)
{
	for (size_t b = 0; b < BUCKETS; b++)
		if (p->identities[b])
			return true;
	return false;
}

/* The identity a job was taken from, unless its client left (or was admitted anew) since. */
static struct identity *job_identity(struct plugin *p, const struct job *job)
{
	struct identity *id = find_identity(p, job->client);
	return id && id->serial == job->serial ? id : NULL;
}

/* Whether a job's verdict is also that of `id`: another connection of the same device name
 * with the same certificate, admitted before the job was taken (a later admission has a
 * verdict newer than the job's), and not being checked itself. */
static bool shares_verdict(const struct identity *id, const struct job *job)
{
	return !id->checking && id->serial <= job->last_serial && !id->revoked &&
	       strcmp(id->name, job->name) == 0 && X509_cmp(id->cert, job->cert) == 0;
}

static void record_verdict(struct identity *id, struct plugin *p, int rc, uint32_t ttl,
			   const char *why)
{
	if (rc == 1) {
		schedule(p, id, now_s(), ttl);
	} else if (!id->revoked) {
		id->revoked = strdup(why);
		p->next_kick_scan = -INFINITY;
	}
}

/* No answer: no verdict. On the fast lane the name goes to the slow lane at once; there, it is
 * tried again after 1, 2, 4, ... s (at most 64), and once more just before its deadline. */
static void retry_later(const struct plugin *p, struct identity *id, double now)
{
	if (!id->slow) {
		id->slow = true;
		id->next_check = now;
		return;
	}
	unsigned shift = id->no_answers < 6 ? id->no_answers : 6;
	id->no_answers++;
	double retry = now + (double)(1u << shift);
	double last_chance = id->deadline - full_budget_ms(p) / 1000.0;
	id->next_check = retry > last_chance && last_chance > now ? last_chance : retry;
}

/* Whether a refusal is the DNS giving no answer (rather than an answer that refuses). */
static bool no_answer(iotsafe_dane_reason reason)
{
	return reason == IOTSAFE_DANE_REASON_DNS_FAILURE ||
	       reason == IOTSAFE_DANE_REASON_INDETERMINATE || reason == IOTSAFE_DANE_REASON_ERROR;
}

static void revalidate(struct plugin *p, struct job *job)
{
	uint32_t ttl = 0;
	double started = now_s();
	int rc = iotsafe_dane_verify_client_within(p->dane, job->cert, p->chain, job->name, &ttl,
						   job->budget_ms);
	double took_ms = (now_s() - started) * 1000.0;
	iotsafe_dane_reason reason = iotsafe_dane_last_reason(NULL);
	char why[4096] = "";
	if (rc != 1) {
		char line[3800];
		last_error_line(line, sizeof line);
		snprintf(why, sizeof why, "%s: %s", iotsafe_dane_reason_name(reason), line);
	}
	pthread_mutex_lock(&p->lock);
	struct identity *picked = job_identity(p, job);
	if (picked)
		picked->checking = false;
	double now = now_s();
	for (size_t b = 0; b < BUCKETS; b++) {
		for (struct identity *id = p->identities[b]; id; id = id->next) {
			if (!shares_verdict(id, job))
				continue;
			if (rc != 1 && no_answer(reason)) {
				retry_later(p, id, now);
			} else {
				record_verdict(id, p, rc, ttl, why);
				id->slow = took_ms > fast_budget_ms(p);
			}
		}
	}
	pthread_mutex_unlock(&p->lock);
	X509_free(job->cert);
}

/* Waits for the next poll (or to be woken to stop); called holding p->lock. */
static void wait_for_work(struct plugin *p)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += WORKER_POLL_MS * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&p->wake, &p->lock, &until);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct plugin *p = w->p;
	struct job job;
	pthread_mutex_lock(&p->lock);
	while (!p->stopping) {
		/* The CA check, a look-up of its own, runs where stalls are expected. */
		if (w->slow_lane && any_identity(p))
			check_cas(p, now_s());
		if (!take_due_job(p, w, &job, now_s())) {
			wait_for_work(p);
			continue;
		}
		pthread_mutex_unlock(&p->lock);
		revalidate(p, &job);
		pthread_mutex_lock(&p->lock);
		w->name[0] = '\0';
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct kick {
	char *client_id;
	char name[NAME_LEN];
	char *why;
};

/* Takes the identities that are revoked or unverified out of the table (their ACL checks
 * are denied from now on) and hands back whom to kick. */
static size_t take_kicks(struct plugin *p, struct kick *kicks, size_t max, double now)
{
	size_t n = 0;
	double next_scan = INFINITY;
	for (size_t b = 0; b < BUCKETS; b++) {
		struct identity **at = &p->identities[b];
		while (*at && n < max) {
			struct identity *id = *at;
			if (verified(id, now)) {
				if (id->deadline < next_scan)
					next_scan = id->deadline;
				at = &id->next;
				continue;
			}
			*at = id->next;
			kicks[n].client_id = id->client_id;
			id->client_id = NULL;
			memcpy(kicks[n].name, id->name, NAME_LEN);
			kicks[n].why = id->revoked
					   ? id->revoked
					   : strdup("no fresh verdict within TTL + revalidate_seconds");
			id->revoked = NULL;
			free_identity(id);
			n++;
		}
	}
	/* Stopped at `max`: the rest is looked at by the next tick. */
	p->next_kick_scan = n < max ? next_scan : -INFINITY;
	return n;
}

static int on_tick(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)event_data;
	struct plugin *p = userdata;
	/* mosquitto 2.0.11 ticks at the end of every loop (loop.c), after a reload's checks and
	 * before it reads the next packets: basic auth from here on is a CONNECT again. */
	p->reloading = false;
	struct kick kicks[64];
	pthread_mutex_lock(&p->lock);
	forget_leaving(p);
	double now = now_s();
	size_t n = now > p->next_kick_scan
			   ? take_kicks(p, kicks, sizeof kicks / sizeof kicks[0], now)
			   : 0;
	char *ca_warning = p->ca_warning;
	p->ca_warning = NULL;
	pthread_mutex_unlock(&p->lock);
	if (ca_warning) {
		mosquitto_log_printf(MOSQ_LOG_WARNING, LOG "%s", ca_warning);
		free(ca_warning);
	}
	/* Outside the lock: a kick disconnects at once, and MOSQ_EVT_DISCONNECT takes it. */
	for (size_t i = 0; i < n; i++) {
		mosquitto_log_printf(MOSQ_LOG_NOTICE, LOG "kicked client %s (%s): %s",
				     kicks[i].client_id, kicks[i].name,
				     kicks[i].why ? kicks[i].why : "revoked");
		mosquitto_kick_client_by_clientid(kicks[i].client_id, false);
		free(kicks[i].client_id);
		free(kicks[i].why);
	}
	return MOSQ_ERR_SUCCESS;
}

/* SIGHUP: mosquitto 2.0.11 fires this in mosquitto_security_init(true), just before
 * mosquitto_security_apply() re-checks every client (loop.c). */
static int on_reload(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)event_data;
	struct plugin *p = userdata;
	p->reloading = true;
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
			     LOG "reload: clients are re-checked by the verdicts held, without DNS");
	/* Any other answer makes mosquitto skip the rest of the reload (older plugins' re-init,
	 * password_file and acl_file; security.c security__init_single). */
	return MOSQ_ERR_PLUGIN_DEFER;
}

/* ---- plugin entry points ---------------------------------------------------------------- */

static void free_plugin(struct plugin *p)
{
	if (p->workers_started) {
		pthread_mutex_lock(&p->lock);
		p->stopping = true;
		pthread_cond_broadcast(&p->wake);
		pthread_mutex_unlock(&p->lock);
		for (size_t i = 0; i < p->workers_started; i++)
			pthread_join(p->workers[i].thread, NULL);
	}
	forget_leaving(p);
	for (size_t b = 0; b < BUCKETS; b++) {
		while (p->without_certificate[b]) {
			struct live_client *c = p->without_certificate[b];
			p->without_certificate[b] = c->next;
			free(c);
		}
	}
	for (size_t b = 0; b < BUCKETS; b++) {
		while (p->identities[b]) {
			struct identity *id = p->identities[b];
			p->identities[b] = id->next;
			free_identity(id);
		}
	}
	sk_X509_pop_free(p->chain, X509_free);
	free(p->ca_warning);
	iotsafe_dane_free(p->dane);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* mosquitto 2.0 fires MOSQ_EVT_TICK only without per_listener_settings, and without ticks no
 * session would ever be kicked. Its plugin id is a struct whose one member is the listener the
 * plugin was configured under: set exactly when per_listener_settings is true (2.0.11
 * security.c, security__module_init_single). */
static bool per_listener_settings(mosquitto_plugin_id_t *id)
{
	struct plugin_id_2_0 {
		void *listener;
	};
	return ((struct plugin_id_2_0 *)id)->listener != NULL;
}

static const struct {
	int event;
	MOSQ_FUNC_generic_callback cb;
} callbacks[] = {
    {MOSQ_EVT_BASIC_AUTH, on_basic_auth},
    {MOSQ_EVT_ACL_CHECK, on_acl_check},
    {MOSQ_EVT_DISCONNECT, on_disconnect},
    {MOSQ_EVT_TICK, on_tick},
    {MOSQ_EVT_RELOAD, on_reload},
};

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for (int i = 0; i < supported_version_count; i++)
		if (supported_versions[i] == 5)
			return 5;
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
			  struct mosquitto_opt *opts, int opt_count)
{
	if (per_listener_settings(identifier)) {
		mosquitto_log_printf(MOSQ_LOG_ERR,
				     LOG "refusing to start with per_listener_settings true: mosquitto "
					 "2.0 then sends plugins no MOSQ_EVT_TICK, and revoked devices "
					 "would never be kicked");
		return MOSQ_ERR_INVAL;
	}
	struct plugin *p = calloc(1, sizeof *p);
	if (!p)
		return MOSQ_ERR_NOMEM;
	p->id = identifier;
	p->next_kick_scan = INFINITY;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	if (parse_options(&p->cfg, opts, opt_count) != 0 || open_dane(p) != 0) {
		free_plugin(p);
		return MOSQ_ERR_INVAL;
	}
	char *ca_warning = unpublished_cas(p);
	if (ca_warning) {
		mosquitto_log_printf(MOSQ_LOG_WARNING, LOG "%s", ca_warning);
		free(ca_warning);
	} else if (p->cfg.ca_discovery) {
		mosquitto_log_printf(MOSQ_LOG_NOTICE,
				     LOG "every CA of plugin_opt_cafile %s is published at %s",
				     p->cfg.cafile, p->cfg.ca_discovery);
	}
	p->next_ca_check = now_s() + p->cfg.revalidate_s;
	for (size_t i = 0; i < WORKERS; i++) {
		struct worker *w = &p->workers[i];
		w->p = p;
		w->slow_lane = i == WORKERS - 1;
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			mosquitto_log_printf(MOSQ_LOG_ERR, LOG "cannot start the re-validation threads");
			free_plugin(p);
			return MOSQ_ERR_UNKNOWN;
		}
		p->workers_started++;
	}
	for (size_t i = 0; i < sizeof callbacks / sizeof callbacks[0]; i++) {
		if (mosquitto_callback_register(identifier, callbacks[i].event, callbacks[i].cb, NULL,
						p) != MOSQ_ERR_SUCCESS) {
			mosquitto_log_printf(MOSQ_LOG_ERR, LOG "cannot register for event %d",
					     callbacks[i].event);
			free_plugin(p);
			return MOSQ_ERR_UNKNOWN;
		}
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
			     LOG "devices admitted by DNSSEC-validated TLSA in %s (resolver %s, %s); "
				 "re-validated %u s after their records' TTL at the latest",
			     p->cfg.allowed_domains, p->cfg.resolver ? p->cfg.resolver : "127.0.0.1:53",
			     p->cfg.trust_ad ? "AD bit trusted"
					     : p->cfg.trust_anchor ? p->cfg.trust_anchor : "IANA root",
			     p->cfg.revalidate_s);
	*userdata = p;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	(void)opts;
	(void)opt_count;
	struct plugin *p = userdata;
	if (!p)
		return MOSQ_ERR_SUCCESS;
	for (size_t i = 0; i < sizeof callbacks / sizeof callbacks[0]; i++)
		mosquitto_callback_unregister(p->id, callbacks[i].event, callbacks[i].cb, NULL);
	free_plugin(p);
	return MOSQ_ERR_SUCCESS;
}
