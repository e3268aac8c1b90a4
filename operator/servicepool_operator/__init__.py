"""servicepool operator: reconciles ServicePools into running, health-checked pools."""
