/* What bindgen reads: DPDK's public headers plus the shim's declarations. */
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

/* DPDK's static inline functions and macros have no symbol to link against: these wrap them. */
uint16_t callrec_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                                  struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
void callrec_rte_pktmbuf_free(struct rte_mbuf *m);
void *callrec_rte_pktmbuf_mtod(struct rte_mbuf *m);
int callrec_rte_errno(void);
