/*
 * A unit-test fake of the mosquitto 2.0 broker, for the one thing a real broker cannot show:
 * what plugins/mosquitto does when MOSQ_EVT_TICK stops arriving. mosquitto 2.0.11 ticks as
 * long as it runs, so tests/broker_plugin.rs (the real broker, the real clients) cannot stop
 * them; this program provides the broker functions the plugin links against (exported to it
 * with -rdynamic), dlopen()s the real built plugin, initialises it with the options given, and
 * then calls its callbacks on command -- MOSQ_EVT_TICK only when told. Used by
 * tests/plugin_without_ticks.rs (also for what a reload's re-checks answer clients a real
 * broker cannot easily make: a websocket CONNECT inside the reload's window, many sessions).
 *
 * Usage: plugin_harness PLUGIN.so CERT.pem CLIENT_ID [KEY=VALUE]...   (the plugin_opt_ lines)
 * Commands on stdin, one a line, each answered by one line on stdout:
 *   auth          MOSQ_EVT_BASIC_AUTH for the client (its certificate is CERT.pem):
 *                 "auth RC T0 T1", RC the callback's result, T0/T1 CLOCK_MONOTONIC seconds
 *                 before and after the call
 *   now           "now T"
 *   watch SECONDS MOSQ_EVT_ACL_CHECK for a publish and a subscribe every 20 ms, until SECONDS
 *                 have passed or a check is denied (then for 200 ms more, to see it stays so):
 *                 "watch allowed_until=T denied_from=T|none publish=RC subscribe=RC
 *                 allowed_again=0|1", RCs those of the last check
 *   kicks         "kicks N": how many times the plugin called mosquitto_kick_client_by_*
 *   reload        MOSQ_EVT_RELOAD, as at a SIGHUP: "reload RC"; the basic-auth calls up to the
 *                 next "tick" are the reload's re-checks
 *   tick          MOSQ_EVT_TICK once (ends a reload's window): "tick RC"
 *   other ID USERNAME|- ws|tcp cert|none
 *                 sets up a second client: its client id, username ("-": none), protocol
 *                 (websockets or MQTT over TCP) and whether it has CERT.pem: "other ok"
 *   auth-other    MOSQ_EVT_BASIC_AUTH for the second client: "auth-other RC"
 *   disconnect-other  MOSQ_EVT_DISCONNECT for the second client: "disconnect-other RC"
 *   churn N       N clients with CERT.pem, client ids churn/1..N and username "churn",
 *                 each admitted then disconnected: "churn admitted=K" (K admitted)
 * Every line the plugin logs is printed as "log LEVEL TEXT", every kick as "kick CLIENT_ID".
 * End of input: mosquitto_plugin_cleanup, exit 0.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

/* mosquitto's own structs are opaque to plugins; these are the fake's. The plugin id's first
 * member is the listener, NULL without per_listener_settings (as in mosquitto 2.0.11). */
struct mosquitto_plugin_id_t {
	void *listener;
};

struct mosquitto {
	const char *id;
	char *username;
	X509 *cert;
	int protocol;
};

/* Up to MOSQ_EVT_DISCONNECT, the highest event of plugin interface 5. */
#define EVENTS 16

static MOSQ_FUNC_generic_callback callbacks[EVENTS];
static void *callback_data[EVENTS];
static unsigned kicks;
/* The plugin's worker thread may call nothing of the broker, but a line is kept whole if it
 * does. */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void reply(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&out_lock);
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
	va_end(ap);
}

/* ---- the broker functions the plugin calls ------------------------------------------------ */

int mosquitto_callback_register(mosquitto_plugin_id_t *identifier, int event,
				MOSQ_FUNC_generic_callback cb_func, const void *event_data,
				void *userdata)
{
	(void)identifier;
	(void)event_data;
	if (event < 0 || event >= EVENTS || !cb_func)
		return MOSQ_ERR_INVAL;
	if (callbacks[event])
		return MOSQ_ERR_ALREADY_EXISTS;
	callbacks[event] = cb_func;
	callback_data[event] = userdata;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_callback_unregister(mosquitto_plugin_id_t *identifier, int event,
				  MOSQ_FUNC_generic_callback cb_func, const void *event_data)
{
	(void)identifier;
	(void)event_data;
	if (event < 0 || event >= EVENTS || callbacks[event] != cb_func)
		return MOSQ_ERR_NOT_FOUND;
	callbacks[event] = NULL;
	return MOSQ_ERR_SUCCESS;
}

void mosquitto_log_printf(int level, const char *fmt, ...)
{
	char line[16384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	for (char *c = line; *c; c++)
		if (*c == '\n')
			*c = ' ';
	reply("log %d %s", level, line);
}

const char *mosquitto_client_address(const struct mosquitto *client)
{
	(void)client;
	return "127.0.0.1";
}

const char *mosquitto_client_id(const struct mosquitto *client)
{
	return client->id;
}

const char *mosquitto_client_username(const struct mosquitto *client)
{
	return client->username;
}

int mosquitto_client_protocol(const struct mosquitto *client)
{
	return client->protocol;
}

/* As mosquitto's: a reference of the caller's own, which it frees. */
void *mosquitto_client_certificate(const struct mosquitto *client)
{
	if (client->cert)
		X509_up_ref(client->cert);
	return client->cert;
}

int mosquitto_set_username(struct mosquitto *client, const char *username)
{
	char *copy = username ? strdup(username) : NULL;
	if (username && !copy)
		return MOSQ_ERR_NOMEM;
	free(client->username);
	client->username = copy;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_kick_client_by_clientid(const char *clientid, bool with_will)
{
	(void)with_will;
	__atomic_add_fetch(&kicks, 1, __ATOMIC_SEQ_CST);
	reply("kick %s", clientid ? clientid : "(null)");
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_kick_client_by_username(const char *username, bool with_will)
{
	(void)with_will;
	__atomic_add_fetch(&kicks, 1, __ATOMIC_SEQ_CST);
	reply("kick username %s", username ? username : "(null)");
	return MOSQ_ERR_SUCCESS;
}

/* ---- the harness -------------------------------------------------------------------------- */

static int fire(int event, void *data)
{
	if (!callbacks[event])
		return MOSQ_ERR_NOT_SUPPORTED;
	return callbacks[event](event, data, callback_data[event]);
}

static int acl_check(struct mosquitto *client, int access)
{
	struct mosquitto_evt_acl_check ev = {
	    .client = client, .topic = "sensors/x", .access = access, .qos = 1};
	return fire(MOSQ_EVT_ACL_CHECK, &ev);
}

/* The "watch" command: ACL checks until denied or `seconds` have passed. */
static void watch(struct mosquitto *client, double seconds)
{
	double start = now_s(), allowed_until = -1, denied_from = -1;
	bool allowed_again = false;
	int publish = 0, subscribe = 0;
	for (;;) {
		double t = now_s();
		if (denied_from < 0 ? t > start + seconds : t > denied_from + 0.2)
			break;
		publish = acl_check(client, MOSQ_ACL_WRITE);
		subscribe = acl_check(client, MOSQ_ACL_SUBSCRIBE);
		bool allowed = publish == MOSQ_ERR_SUCCESS && subscribe == MOSQ_ERR_SUCCESS;
		if (allowed && denied_from >= 0)
			allowed_again = true;
		if (allowed)
			allowed_until = t;
		else if (denied_from < 0)
			denied_from = t;
		nanosleep(&(struct timespec){.tv_nsec = 20 * 1000000L}, NULL);
	}
	char denied[32] = "none";
	if (denied_from >= 0)
		snprintf(denied, sizeof denied, "%.3f", denied_from);
	reply("watch allowed_until=%.3f denied_from=%s publish=%d subscribe=%d allowed_again=%d",
	      allowed_until, denied, publish, subscribe, allowed_again);
}

static int basic_auth(struct mosquitto *client)
{
	struct mosquitto_evt_basic_auth ev = {.client = client};
	return fire(MOSQ_EVT_BASIC_AUTH, &ev);
}

static int disconnect(struct mosquitto *client)
{
	struct mosquitto_evt_disconnect ev = {.client = client};
	return fire(MOSQ_EVT_DISCONNECT, &ev);
}

/* The "churn" command: `count` clients admitted and disconnected one after the other, each
 * at an address of its own that stays allocated (as offline sessions stay in mosquitto). */
static void churn(X509 *cert, long count)
{
	struct churned {
		struct mosquitto client;
		char id[32];
	} *all = calloc((size_t)count, sizeof *all);
	long admitted = 0;
	for (long i = 0; all && i < count; i++) {
		struct churned *c = &all[i];
		snprintf(c->id, sizeof c->id, "churn/%ld", i + 1);
		c->client = (struct mosquitto){.id = c->id, .username = strdup("churn"), .cert = cert};
		if (basic_auth(&c->client) == MOSQ_ERR_SUCCESS)
			admitted++;
		disconnect(&c->client);
	}
	for (long i = 0; all && i < count; i++)
		free(all[i].client.username);
	free(all);
	reply("churn admitted=%ld", admitted);
}

/* The "other" command: sets up the second client. */
static void set_other(struct mosquitto *other, char *id_buf, size_t id_len, X509 *cert,
		      const char *line)
{
	char id[256], username[256], protocol[8], with_cert[8];
	if (sscanf(line, "other %255s %255s %7s %7s", id, username, protocol, with_cert) != 4) {
		reply("error other: expected ID USERNAME|- ws|tcp cert|none");
		return;
	}
	snprintf(id_buf, id_len, "%s", id);
	free(other->username);
	other->id = id_buf;
	other->username = strcmp(username, "-") == 0 ? NULL : strdup(username);
	other->protocol = strcmp(protocol, "ws") == 0 ? mp_websockets : mp_mqtt;
	other->cert = strcmp(with_cert, "cert") == 0 ? cert : NULL;
	reply("other ok");
}

static X509 *read_certificate(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return cert;
}

/* The plugin_opt_ lines from KEY=VALUE arguments. */
static struct mosquitto_opt *options(int count, char **args)
{
	struct mosquitto_opt *opts = calloc((size_t)count + 1, sizeof *opts);
	for (int i = 0; opts && i < count; i++) {
		char *eq = strchr(args[i], '=');
		if (!eq) {
			fprintf(stderr, "plugin_harness: option %s is not KEY=VALUE\n", args[i]);
			exit(2);
		}
		*eq = '\0';
		opts[i].key = args[i];
		opts[i].value = eq + 1;
	}
	return opts;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: plugin_harness PLUGIN.so CERT.pem CLIENT_ID [KEY=VALUE]...\n");
		return 2;
	}
	struct mosquitto client = {.id = argv[3], .cert = read_certificate(argv[2])};
	if (!client.cert) {
		fprintf(stderr, "plugin_harness: no PEM certificate in %s\n", argv[2]);
		return 2;
	}
	void *plugin = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!plugin) {
		fprintf(stderr, "plugin_harness: %s\n", dlerror());
		return 2;
	}
	/* The entry points as mosquitto_plugin.h declares them. */
	typeof(&mosquitto_plugin_version) version = dlsym(plugin, "mosquitto_plugin_version");
	typeof(&mosquitto_plugin_init) init = dlsym(plugin, "mosquitto_plugin_init");
	typeof(&mosquitto_plugin_cleanup) cleanup = dlsym(plugin, "mosquitto_plugin_cleanup");
	const int supported[] = {5, 4};
	if (!version || !init || !cleanup || version(2, supported) != 5) {
		fprintf(stderr, "plugin_harness: %s is not a plugin of interface version 5\n", argv[1]);
		return 2;
	}
	int count = argc - 4;
	struct mosquitto_opt *opts = options(count, argv + 4);
	struct mosquitto_plugin_id_t id = {.listener = NULL};
	void *userdata = NULL;
	int rc = init(&id, &userdata, opts, count);
	reply("init %d tick_registered=%d", rc, callbacks[MOSQ_EVT_TICK] != NULL);
	if (rc != MOSQ_ERR_SUCCESS)
		return 1;

	struct mosquitto other = {.id = ""};
	char other_id[256] = "";
	char line[1024];
	while (fgets(line, sizeof line, stdin)) {
		double seconds;
		long count;
		if (strcmp(line, "reload\n") == 0) {
			reply("reload %d", fire(MOSQ_EVT_RELOAD, &(struct mosquitto_evt_reload){0}));
		} else if (strcmp(line, "tick\n") == 0) {
			reply("tick %d", fire(MOSQ_EVT_TICK, &(struct mosquitto_evt_tick){0}));
		} else if (strncmp(line, "other ", 6) == 0) {
			set_other(&other, other_id, sizeof other_id, client.cert, line);
		} else if (strcmp(line, "auth-other\n") == 0) {
			reply("auth-other %d", basic_auth(&other));
		} else if (strcmp(line, "disconnect-other\n") == 0) {
			reply("disconnect-other %d", disconnect(&other));
		} else if (sscanf(line, "churn %ld", &count) == 1) {
			churn(client.cert, count);
		} else if (strcmp(line, "auth\n") == 0) {
			struct mosquitto_evt_basic_auth ev = {.client = &client};
			double t0 = now_s();
			int auth = fire(MOSQ_EVT_BASIC_AUTH, &ev);
			double t1 = now_s();
			reply("auth %d %.3f %.3f", auth, t0, t1);
		} else if (strcmp(line, "now\n") == 0) {
			reply("now %.3f", now_s());
		} else if (sscanf(line, "watch %lf", &seconds) == 1) {
			watch(&client, seconds);
		} else if (strcmp(line, "kicks\n") == 0) {
			reply("kicks %u", __atomic_load_n(&kicks, __ATOMIC_SEQ_CST));
		} else {
			reply("error unknown command %s", line);
		}
	}
	cleanup(userdata, opts, count);
	free(opts);
	free(client.username);
	free(other.username);
	X509_free(client.cert);
	return 0;
}
