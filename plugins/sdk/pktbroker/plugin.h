/**
 * @file plugin.h
 * @brief The pktbroker plugin ABI: protocol decoders loaded as shared objects by pktbrokerd
 *        (live packets) and pktreplay (replayed flows).
 *
 * A plugin is a shared object exporting one C function, #PKTB_PLUGIN_ENTRY, that returns a
 * pointer to a static ::pktb_plugin. The host checks its ABI version and size, loads it with
 * RTLD_NOW | RTLD_LOCAL, calls `init` once, then calls the hooks for each flow whose IP
 * protocol and server port the plugin registered (or for flows announced with
 * pktb_host::expect). Plugins may be written in C or C++; no C++ exception may leave a hook.
 *
 * Threading: the broker may call hooks from one thread per kernel queue at the same time, but
 * never concurrently for the same flow. Global state written by hooks must be synchronized by
 * the plugin; per-flow state needs no locking.
 *
 * Every pointer handed to a hook is valid only until the hook returns, unless stated otherwise.
 * Strings are NUL-terminated UTF-8; lengths are in bytes. Numbers are in host byte order.
 */
#ifndef PKTBROKER_PLUGIN_H
#define PKTBROKER_PLUGIN_H

/* A C header: C++-only advice does not apply. */
/* NOLINTBEGIN(modernize-deprecated-headers, modernize-use-using, modernize-redundant-void-arg) */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * ABI version of this header. The host loads plugins built for this version and for every
 * version down to #PKTB_PLUGIN_ABI_VERSION_MIN; each version only appends members.
 *
 * - 1: the first.
 * - 2: pktb_packet::in_ifindex and out_ifindex, #PKTB_DECISION_LEAVE_HELD,
 *      pktb_host::wake, pktb_plugin::on_command.
 * - 3: channel delivery policies: pktb_plugin::channel_open, channel_close, channel_join,
 *      channel_leave, channel_frame.
 */
#define PKTB_PLUGIN_ABI_VERSION 3u
/** The oldest ABI version the host still loads. */
#define PKTB_PLUGIN_ABI_VERSION_MIN 1u

/** Name of the entry point every plugin exports (see ::pktb_plugin_entry_fn). */
#define PKTB_PLUGIN_ENTRY "pktb_plugin_entry"

/** What a plugin says about one packet. */
typedef enum pktb_action {
  PKTB_PASS = 0,           /**< no opinion: the next plugin of the rule, or the rule's fallback */
  PKTB_ACCEPT = 1,         /**< let the packet through */
  PKTB_DROP = 2,           /**< discard the packet */
  PKTB_HOLD = 3,           /**< decide later: the packet waits (bounded) for pktb_host::release,
                                for this flow's next decided packet, or for its deadline */
  PKTB_ACCEPT_MODIFIED = 4 /**< let through with pktb_decision::payload as the new packet */
} pktb_action;

/** The decision a hook writes; the host zeroes it before each call (so the default is pass). */
typedef struct pktb_decision {
  uint32_t action;        /**< a ::pktb_action */
  uint32_t set_mark;      /**< nonzero with #PKTB_DECISION_SET_MARK in flags: the new packet mark */
  uint32_t flags;         /**< PKTB_DECISION_* bits */
  uint32_t hold_ms;       /**< with #PKTB_HOLD: the deadline; 0 means the host's default */
  const uint8_t* payload; /**< with #PKTB_ACCEPT_MODIFIED: a whole IP packet, copied by the host */
  size_t payload_len;     /**< bytes at payload */
} pktb_decision;

/** pktb_decision::flags: set_mark is valid. */
#define PKTB_DECISION_SET_MARK 0x1u
/**
 * pktb_decision::flags (ABI 2): the flow's held packets stay held. Without it, deciding a
 * packet decides the packets its flow holds the same way (a held head goes with its tail).
 */
#define PKTB_DECISION_LEAVE_HELD 0x2u

/** Which way a packet travels within its flow. */
typedef enum pktb_direction {
  PKTB_FROM_CLIENT = 0, /**< from the endpoint that sent the flow's first packet */
  PKTB_FROM_SERVER = 1  /**< towards it */
} pktb_direction;

/** A transport 5-tuple. Addresses are in network byte order; IPv4 uses the first 4 bytes. */
typedef struct pktb_tuple {
  uint8_t family;   /**< 4 or 6 */
  uint8_t protocol; /**< IP protocol number (6 TCP, 17 UDP, ...) */
  uint16_t client_port;
  uint16_t server_port;
  uint8_t client_addr[16];
  uint8_t server_addr[16];
} pktb_tuple;

/** pktb_host::expect wildcards: fields set here match any value. */
#define PKTB_ANY_CLIENT_ADDR 0x1u
#define PKTB_ANY_CLIENT_PORT 0x2u
#define PKTB_ANY_SERVER_ADDR 0x4u
#define PKTB_ANY_SERVER_PORT 0x8u

/** One packet, as the broker saw it from the kernel or as pktreplay read it from a capture. */
typedef struct pktb_packet {
  const uint8_t* data;    /**< the whole packet, from the IP header */
  size_t len;             /**< captured bytes at data */
  const uint8_t* l4_data; /**< transport payload (TCP or UDP data); NULL when none */
  size_t l4_len;          /**< bytes at l4_data */
  uint32_t tcp_seq;       /**< TCP sequence number of l4_data[0]; 0 for other protocols */
  uint8_t tcp_flags;      /**< TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ...) */
  uint8_t direction;      /**< a ::pktb_direction */
  uint16_t reserved;
  uint32_t mark;         /**< packet mark (broker); 0 in replay */
  uint64_t id;           /**< handle for pktb_host::release; 0 in replay */
  uint64_t timestamp_ns; /**< wall-clock time the packet was seen or captured */
  uint32_t in_ifindex;   /**< ABI 2: interface the packet came in on; 0 when none or in replay */
  uint32_t out_ifindex;  /**< ABI 2: interface it leaves by; 0 when not routed yet or in replay */
} pktb_packet;

/** One flow: both directions of a 5-tuple (or of an expected flow). */
typedef struct pktb_flow {
  pktb_tuple tuple;   /**< client (the first packet's sender) and server */
  void* state;        /**< flow_state_size bytes, zeroed before flow_open; owned by the host */
  uint64_t id;        /**< unique while the host runs */
  uint64_t parent_id; /**< for an expected flow: the flow that announced it; otherwise 0 */
} pktb_flow;

/** Opaque per-call context: pass it back to the host services that take one. */
typedef struct pktb_call pktb_call;

/** Log levels for pktb_host::log. */
typedef enum pktb_log_level {
  PKTB_LOG_DEBUG = 0,
  PKTB_LOG_INFO = 1,
  PKTB_LOG_WARN = 2,
  PKTB_LOG_ERROR = 3
} pktb_log_level;

/**
 * Services the host offers. Handed to init; valid until shutdown returns. Functions that take a
 * ::pktb_call act on the current flow and may only be called from within a hook.
 */
typedef struct pktb_host {
  uint32_t struct_size; /**< sizeof(pktb_host) of the host; newer hosts append members */

  /** Logs one line, prefixed with the plugin's name. */
  void (*log)(const struct pktb_host* host, int level, const char* message);

  /**
   * Registers a named counter (shown by `pktbrokerctl stats` as plugin.NAME) and returns its
   * handle; call from init. Returns UINT32_MAX when the name is empty or too many are defined.
   */
  uint32_t (*counter)(const struct pktb_host* host, const char* name);
  /** Adds n to a counter; safe from any thread. Unknown handles are ignored. */
  void (*count)(const struct pktb_host* host, uint32_t counter, uint64_t n);

  /** The plugin's `config:` value for key (a scalar, as text), or NULL when it is not set. */
  const char* (*config)(const struct pktb_host* host, const char* key);

  /**
   * Publishes a field of the current flow that policy rules can match as `PLUGIN.FIELD`
   * (e.g. dns.qname). Replaces an earlier value. The field must be listed in
   * pktb_plugin::fields. Returns 0, or -1 for an unknown field or an oversized value.
   */
  int (*set_field)(pktb_call* call, const char* field, const char* value, size_t len);

  /**
   * Announces a related flow (an FTP data connection): the next new flow matching pattern
   * (with the PKTB_ANY_* bits in wildcards) before timeout_ms becomes a child of the current
   * flow, handled by this plugin, and inherits the current flow's latest verdict.
   * Returns 0, or -1 when too many expectations are pending.
   */
  int (*expect)(pktb_call* call, const pktb_tuple* pattern, uint32_t wildcards,
                uint32_t timeout_ms);

  /**
   * Decides a packet this plugin held earlier (pktb_packet::id). Returns 0, or -1 when the
   * packet is no longer held (already decided, or its deadline passed).
   */
  int (*release)(pktb_call* call, uint64_t packet_id, const pktb_decision* decision);

  /** Calls on_timer for the current flow after ms milliseconds (replaces an earlier timer). */
  int (*set_timer)(pktb_call* call, uint32_t ms);

  /**
   * Remembers that `address` (4 or 16 bytes by family, network order) was given out for
   * `name` for ttl_s seconds (a DNS answer), so rules can match `dst_name:` on later flows to
   * that address. Returns 0, or -1 for a bad argument.
   */
  int (*remember_name)(pktb_call* call, uint8_t family, const uint8_t* address, const char* name,
                       size_t len, uint32_t ttl_s);

  /**
   * ABI 2 (check struct_size): calls on_timer soon, each on the thread that owns its flow, for
   * every flow of this plugin that has a timer set. For a plugin that learns something outside
   * its hooks (a command, its own thread) that flows wait for. Safe from any thread, also while
   * a hook runs; does nothing in replay.
   */
  void (*wake)(const struct pktb_host* host);

  /**
   * Replay only, after ABI 2 (check struct_size): for a connection the live server will open
   * to the client (active FTP: PORT, EPRT), listens on the client's side of the current flow
   * and writes the address (family as the current flow's, network order) and port to name to
   * the server. The next recorded flow this plugin announced (pktb_host::expect in
   * replay_recorded) is replayed on the connection the server makes, its recorded server side
   * played by pktreplay. Returns 0, or -1 (not in replay, nothing announced, no socket).
   */
  int (*replay_listen)(pktb_call* call, uint8_t address[16], uint16_t* port);
} pktb_host;

/** A flow the plugin is asked to handle: IP protocol plus a range of server ports. */
typedef struct pktb_registration {
  uint8_t protocol;    /**< IP protocol number */
  uint8_t is_default;  /**< nonzero: every flow of this protocol that no other plugin claims */
  uint16_t port_first; /**< server port range, inclusive (ignored when is_default) */
  uint16_t port_last;
} pktb_registration;

/** Replay: what the server's data so far means for the client's next turn. */
typedef enum pktb_turn {
  PKTB_EXPECT_MORE = 0, /**< the server has more to say: keep reading */
  PKTB_TURN_OVER = 1,   /**< the server's answer is complete: the client may send */
  PKTB_FLOW_DONE = 2    /**< nothing more will come on this flow */
} pktb_turn;

/** ABI 3: a channel's frames are Ethernet frames or IP packets. */
typedef enum pktb_link { PKTB_LINK_ETHERNET = 0, PKTB_LINK_IP = 1 } pktb_link;

/** ABI 3: one frame sent into a channel, for pktb_plugin::channel_frame. */
typedef struct pktb_channel_frame {
  const uint8_t* data; /**< the frame */
  size_t len;          /**< bytes at data (checked against the channel's limits) */
  uint32_t from;       /**< the sending member; 0 for the broker (a mirrored packet) */
  uint8_t link;        /**< a ::pktb_link */
  uint8_t reserved[3];
  uint64_t timestamp_ns;   /**< CLOCK_MONOTONIC when the broker read it (for ageing) */
  const uint32_t* members; /**< the members that may receive, in join order */
  size_t member_count;
} pktb_channel_frame;

/** The descriptor a plugin's entry point returns. Unused hooks are NULL. */
typedef struct pktb_plugin {
  uint32_t abi_version; /**< #PKTB_PLUGIN_ABI_VERSION */
  uint32_t struct_size; /**< sizeof(pktb_plugin) */
  const char* name;     /**< unique, [a-z0-9_]+; the prefix of its policy fields */
  const char* version;  /**< free text, logged at load */
  const pktb_registration* registrations; /**< flows the plugin decodes */
  size_t registration_count;
  const char* const* fields; /**< field names the plugin publishes; NULL-terminated or NULL */

  /**
   * Called once after loading. Returns the plugin's global state (passed to every hook), or
   * NULL with *error pointing to a static message on failure (the plugin is then unloaded).
   */
  void* (*init)(const pktb_host* host, const char** error);
  /** Called once before unloading; no hook runs after it. */
  void (*shutdown)(void* global);

  /** Bytes of per-flow state (pktb_flow::state), zeroed by the host; at most 64 KiB. */
  size_t flow_state_size;
  /** A flow begins (optional). Returns 0, or nonzero to ignore the flow (no hooks are called). */
  int (*flow_open)(void* global, pktb_call* call, pktb_flow* flow);
  /** A flow ends (idle, evicted, replay finished, shutdown): free what flow_open allocated. */
  void (*flow_close)(void* global, pktb_flow* flow);

  /** Broker: one live packet of a flow. Writes its decision (pre-zeroed: pass). */
  void (*on_packet)(void* global, pktb_call* call, pktb_flow* flow, const pktb_packet* packet,
                    pktb_decision* decision);
  /** A timer set with pktb_host::set_timer fired. */
  void (*on_timer)(void* global, pktb_call* call, pktb_flow* flow);

  /** Replay: a packet of the flow read from the capture, before replay starts. */
  void (*replay_recorded)(void* global, pktb_call* call, pktb_flow* flow,
                          const pktb_packet* packet);
  /**
   * Replay: the client's next turn is about to be sent. The plugin may rewrite it in place
   * (at most capacity bytes; *len is updated), e.g. to give a DNS query a fresh id.
   * Returns 0, or nonzero to skip this turn.
   */
  int (*replay_client_data)(void* global, pktb_call* call, pktb_flow* flow, uint8_t* data,
                            size_t* len, size_t capacity);
  /**
   * Replay: the live server sent data; `data` is everything received in this turn so far and
   * `recorded` what the server sent in this turn in the capture. A plugin may announce
   * related flows here (pktb_host::expect with the live server's port): the recorded flow it
   * announced the same way in replay_recorded is replayed to it.
   */
  pktb_turn (*replay_server_data)(void* global, pktb_call* call, pktb_flow* flow,
                                  const uint8_t* data, size_t len, const uint8_t* recorded,
                                  size_t recorded_len);
  /**
   * Replay with --compare: blanks, in place, what differs between any two answers of a
   * server (an HTTP Date header, a DNS id) in one server turn, recorded or live.
   * Returns the new length (at most len).
   */
  size_t (*replay_mask)(void* global, pktb_flow* flow, uint8_t* data, size_t len);

  /**
   * ABI 2: a command from an operator (`pktbrokerctl plugin NAME ARG...`): argc arguments,
   * each NUL-terminated. Writes its answer, NUL-terminated, into reply (capacity bytes; longer
   * answers are cut). Returns 0, or nonzero when it refuses the command (reply says why).
   * Called from a control thread, concurrently with the other hooks.
   */
  int (*on_command)(void* global, size_t argc, const char* const* argv, char* reply,
                    size_t capacity);

  /*
   * ABI 3: a channel delivery policy (a channel's `delivery:` names the plugin). The hooks of
   * one channel are never called concurrently; those of different channels may be.
   */
  /** A channel using this policy is made. Returns its state, or NULL with *error set. */
  void* (*channel_open)(void* global, const char* channel, uint8_t link, const char** error);
  /** The channel is gone: free its state. */
  void (*channel_close)(void* global, void* channel);
  /** A member joined (optional). */
  void (*channel_join)(void* global, void* channel, uint32_t member);
  /** A member left (optional): forget what was learnt about it. */
  void (*channel_leave)(void* global, void* channel, uint32_t member);
  /**
   * Where a frame goes: writes the receiving members into out (at most capacity, which is at
   * least member_count) and returns how many. The host delivers only to members listed in
   * frame->members, never back to the sender; other ids are counted as invalid and skipped.
   */
  size_t (*channel_frame)(void* global, void* channel, const pktb_channel_frame* frame,
                          uint32_t* out, size_t capacity);
} pktb_plugin;

/** The entry point's type: returns a descriptor that stays valid until the library unloads. */
typedef const pktb_plugin* (*pktb_plugin_entry_fn)(void);

/** Declares the entry point with the right name, linkage and visibility. */
#define PKTB_PLUGIN_EXPORT __attribute__((visibility("default")))

#ifdef __cplusplus
}
#endif

/* NOLINTEND(modernize-deprecated-headers, modernize-use-using, modernize-redundant-void-arg) */

#endif /* PKTBROKER_PLUGIN_H */
