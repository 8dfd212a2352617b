/* Exported wrappers of DPDK's inline fast-path functions (see shim.h). */
#include "shim.h"

uint16_t callrec_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                                  struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
    return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

void callrec_rte_pktmbuf_free(struct rte_mbuf *m)
{
    rte_pktmbuf_free(m);
}

void *callrec_rte_pktmbuf_mtod(struct rte_mbuf *m)
{
    return rte_pktmbuf_mtod(m, void *);
}

int callrec_rte_errno(void)
{
    return rte_errno;
}
